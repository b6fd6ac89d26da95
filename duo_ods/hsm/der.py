"""The little DER that PKCS#11 public keys need (no ASN.1 library in the dependencies).

Used for CKA_EC_POINT (an OCTET STRING around the point), CKA_EC_PARAMS (a named-curve
OID) and the RSA SubjectPublicKeyInfo that carries a transport key between nodes.
"""

from __future__ import annotations

from duo_ods.errors import HsmError

TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_SEQUENCE = 0x30

# AlgorithmIdentifier of rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
RSA_ENCRYPTION_ALGID = bytes.fromhex("300d06092a864886f70d0101010500")


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def integer(value: int) -> bytes:
    """A non-negative INTEGER (a leading zero byte keeps the sign bit clear)."""
    if value < 0:
        raise ValueError("negative INTEGER not supported")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return tlv(TAG_INTEGER, body)


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Parse one TLV at offset; return (tag, value, offset after it). Definite lengths only."""
    try:
        tag = data[offset]
        first = data[offset + 1]
        pos = offset + 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise HsmError("DER: unsupported length form")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
    except IndexError:
        raise HsmError("DER: truncated header") from None
    end = pos + length
    if end > len(data):
        raise HsmError("DER: value runs past the end of the data")
    return tag, data[pos:end], end


def read_single(data: bytes, tag: int) -> bytes:
    """The value of a DER blob that must be exactly one TLV with the given tag."""
    got, value, end = read_tlv(data)
    if got != tag or end != len(data):
        raise HsmError(f"DER: expected exactly one element with tag 0x{tag:02x}")
    return value


def octet_string(value: bytes) -> bytes:
    return tlv(TAG_OCTET_STRING, value)


def rsa_spki(modulus: int, exponent: int) -> bytes:
    """SubjectPublicKeyInfo of an RSA public key (what `openssl pkey -pubin -inform DER` reads)."""
    rsa_key = tlv(TAG_SEQUENCE, integer(modulus) + integer(exponent))
    return tlv(TAG_SEQUENCE, RSA_ENCRYPTION_ALGID + tlv(TAG_BIT_STRING, b"\x00" + rsa_key))


def parse_rsa_spki(spki: bytes) -> tuple[int, int]:
    """(modulus, exponent) from an RSA SubjectPublicKeyInfo; HsmError for anything else."""
    body = read_single(spki, TAG_SEQUENCE)
    tag, algid, pos = read_tlv(body)
    if tlv(tag, algid) != RSA_ENCRYPTION_ALGID:
        raise HsmError("transport key is not an rsaEncryption SubjectPublicKeyInfo")
    tag, bits, end = read_tlv(body, pos)
    if tag != TAG_BIT_STRING or end != len(body) or not bits or bits[0] != 0:
        raise HsmError("transport key: malformed BIT STRING")
    key = read_single(bits[1:], TAG_SEQUENCE)
    tag, mod, pos = read_tlv(key)
    if tag != TAG_INTEGER:
        raise HsmError("transport key: modulus is not an INTEGER")
    tag, exp, end = read_tlv(key, pos)
    if tag != TAG_INTEGER or end != len(key):
        raise HsmError("transport key: exponent is not an INTEGER")
    return int.from_bytes(mod, "big"), int.from_bytes(exp, "big")
