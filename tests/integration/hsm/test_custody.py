"""Key custody enforced by real SoftHSM tokens: each attack of issue 12, with the user PIN in hand.

The attacker has a logged-in user session on a token (the PIN the ODS daemons use) and calls
PKCS#11 directly. Every test names the attack, runs it, and checks the token refused it with
the CKR_ code SoftHSM 2.6.1 gives. Where SoftHSM cannot refuse, the test shows the residual
risk as it is (docs/security.md says what closes it). The legit flow must keep working.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import PyKCS11  # type: ignore[import-untyped]
import pytest

from duo_ods.errors import HsmError
from duo_ods.hsm import der, kek, keys
from duo_ods.hsm._p11 import (
    CKA_CLASS,
    CKA_COPYABLE,
    CKA_DECRYPT,
    CKA_DERIVE,
    CKA_ENCRYPT,
    CKA_EXTRACTABLE,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_MODIFIABLE,
    CKA_MODULUS,
    CKA_PRIVATE,
    CKA_PUBLIC_EXPONENT,
    CKA_SENSITIVE,
    CKA_SIGN,
    CKA_TOKEN,
    CKA_TRUSTED,
    CKA_UNWRAP,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_WRAP_WITH_TRUSTED,
    CKK_AES,
    CKK_GENERIC_SECRET,
    CKK_RSA,
    CKM_AES_ECB,
    CKM_AES_KEY_GEN,
    CKM_AES_KEY_WRAP_PAD,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY,
    CKO_SECRET_KEY,
    AttrValue,
    Handle,
    Mechanism,
    Session,
)
from duo_ods.hsm.custody import custody_problems, custody_report
from tests.integration.hsm.attack import copy_object, derive, refused
from tests.integration.hsm.tokens import (
    HOLDER,
    KEK,
    MODULE,
    PIN,
    SO_PIN,
    TRANSPORT,
    Hsm,
    hand_over_kek,
    pin_transport_key,
    session,
    so_session,
)
from tests.support.hsm import init_token
from tests.support.kwp import kek_by_value

pytestmark = pytest.mark.integration

KWP = Mechanism.plain(CKM_AES_KEY_WRAP_PAD)
NODES = ("A", "B")
TOKENS = (*NODES, HOLDER)
CKA_PRIVATE_EXPONENT: int = PyKCS11.CKA_PRIVATE_EXPONENT
CKM_AES_ECB_ENCRYPT_DATA: int = PyKCS11.CKM_AES_ECB_ENCRYPT_DATA


@dataclass(frozen=True)
class Shared:
    """A DNSSEC key as `key create` leaves it: made in A, copied into B and the backup, sealed."""

    key: keys.HsmKey
    public: bytes
    bundle: bytes


def share(algorithm: int) -> Shared:
    with session("A") as a, session("B") as b, session(HOLDER) as bk:
        key = keys.generate_keypair(a, algorithm)
        public = keys.dnskey_public(a, key.locator)
        bundle = keys.wrap_private(a, key.locator, KEK)
        assert keys.unwrap_private(b, bundle, KEK, key, public)
        assert keys.unwrap_private(bk, bundle, KEK, key, public)
        # the peers and the backup confirmed: seal on every token
        assert [keys.seal_key(s, key.locator) for s in (a, b, bk)] == [True, False, False]
    return Shared(key, public, bundle)


@pytest.fixture(scope="module")
def shared(hsm: Hsm) -> Iterator[dict[int, Shared]]:
    made = {algorithm: share(algorithm) for algorithm in (13, 8)}
    yield made
    with session("A") as a, session("B") as b, session(HOLDER) as bk:
        for item in made.values():
            for s in (a, b, bk):
                keys.delete_key(s, item.key.locator)


def _private(s: Session, locator: str) -> Handle:
    (handle,) = s.find([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, locator)])
    return handle


def _kek(s: Session, label: str = KEK) -> Handle:
    (handle,) = s.find([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, label)])
    return handle


def _attacker_aes(s: Session) -> Handle:
    """An AES key the attacker makes and knows how to use (wrap, unwrap, decrypt)."""
    return s.generate_key(
        CKM_AES_KEY_GEN,
        [
            (CKA_CLASS, CKO_SECRET_KEY),
            (CKA_KEY_TYPE, CKK_AES),
            (CKA_TOKEN, False),
            (CKA_VALUE_LEN, 32),
            (CKA_SENSITIVE, False),
            (CKA_EXTRACTABLE, True),
            (CKA_WRAP, True),
            (CKA_UNWRAP, True),
            (CKA_DECRYPT, True),
        ],
    )


def _attacker_rsa(s: Session, *, token: bool = False) -> tuple[Handle, Handle]:
    return s.generate_key_pair(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        [(CKA_TOKEN, token), (CKA_WRAP, True), (CKA_ENCRYPT, True), (CKA_MODULUS_BITS_, 3072),
         (CKA_PUBLIC_EXPONENT, b"\x01\x00\x01")],
        [(CKA_TOKEN, False), (CKA_UNWRAP, True), (CKA_DECRYPT, True), (CKA_SENSITIVE, False),
         (CKA_EXTRACTABLE, True)],
    )  # fmt: skip


CKA_MODULUS_BITS_: int = PyKCS11.CKA_MODULUS_BITS


# -- the legit flow ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [13, 8])
def test_legit_flow_still_works_and_leaves_every_token_sealed(
    hsm: Hsm, shared: dict[int, Shared], algorithm: int
) -> None:
    item = shared[algorithm]
    message = b"example. 3600 IN SOA ns.example. ..."
    with session("A") as a, session("B") as b, session(HOLDER) as bk:
        assert (
            keys.dnskey_public(a, item.key.locator) == keys.dnskey_public(b, item.key.locator) == item.public
        )
        assert keys.dnskey_public(bk, item.key.locator) == item.public
        assert keys.verify(a, item.key, message, keys.sign(b, item.key, message))
        assert keys.verify(b, item.key, message, keys.sign(a, item.key, message))
        for s in (a, b, bk):
            assert keys.is_sealed(s, item.key.locator)
            entries = [e for e in custody_report(s, KEK) if e.label == item.key.locator]
            (private,) = [e for e in entries if e.object_class == "private"]
            assert (private.sensitive, private.extractable, private.copyable, private.derive) == (
                True, False, False, False,
            )  # fmt: skip
        # the copies (not the origin's key) are also unmodifiable; PKCS#11 reports an unwrapped key
        # as never "always sensitive" / "never extractable" (it came from outside), hence not checked
        for s in (b, bk):
            (private,) = [
                e
                for e in custody_report(s, KEK)
                if e.label == item.key.locator and e.object_class == "private"
            ]
            assert private.modifiable is False
        # every token sealed: nodes hold nothing extractable, the backup's KEK goes to trusted keys only
        assert custody_problems(custody_report(a, KEK), holder=False) == []
        assert custody_problems(custody_report(b, KEK), holder=False) == []
        assert custody_problems(custody_report(bk, KEK), holder=True) == []


def test_custody_report_names_what_is_wrong(hsm: Hsm) -> None:
    with session("A") as a:
        key = keys.generate_keypair(a, 13)
        try:
            problems = custody_problems(custody_report(a, KEK), holder=False)
            assert problems == [f"dnssec private {key.locator!r}: extractable (not sealed)"]
            assert custody_problems(custody_report(a, KEK), holder=False, open_keys={key.locator}) == []
            # a KEK as older ods-duo versions made it: no unwrap template, modifiable, decrypt-able not set
            kek_by_value(a, "legacy-kek", bytes(32))
            legacy = custody_problems(custody_report(a, "legacy-kek"), holder=False, open_keys={key.locator})
            assert any("no unwrap template" in p and "modifiable is not false" in p for p in legacy), legacy
            # the holder's KEK seen from a node's point of view is a problem (extractable on a node)
            with session(HOLDER) as bk:
                as_node = custody_problems(custody_report(bk, KEK), holder=False)
                assert as_node == [f"kek secret {KEK!r}: extractable on a node"]
        finally:
            keys.delete_key(a, key.locator)
            kek.delete_kek(a, "legacy-kek")


# -- attack: wrap a key or the KEK under an AES key the attacker makes -------------------------


def test_the_copy_window_is_real_and_seal_closes_it(hsm: Hsm) -> None:
    """Before sealing the origin's key can be wrapped by anyone with the PIN (documented window)."""
    with session("A") as a:
        key = keys.generate_keypair(a, 13)
        try:
            attacker = _attacker_aes(a)
            assert a.wrap(attacker, _private(a, key.locator), KWP)  # the window
            assert keys.seal_key(a, key.locator) is True
            assert keys.seal_key(a, key.locator) is False  # idempotent
            with refused("CKR_KEY_UNEXTRACTABLE"):
                a.wrap(attacker, _private(a, key.locator), KWP)
            # the token refuses to undo the seal
            with refused("CKR_ATTRIBUTE_READ_ONLY"):
                a.set_attributes(_private(a, key.locator), [(CKA_EXTRACTABLE, True)])
        finally:
            keys.delete_key(a, key.locator)


def test_wrap_with_seal_closes_the_window_at_the_wrap(hsm: Hsm) -> None:
    with session("A") as a, session("B") as b:
        key = keys.generate_keypair(a, 13)
        try:
            blob = keys.wrap_private(a, key.locator, KEK, seal=True)
            assert keys.is_sealed(a, key.locator)
            # the blob still copies the key (RFC 5649 is deterministic: a retry may reuse it)
            assert keys.unwrap_private(b, blob, KEK, key, keys.dnskey_public(a, key.locator))
            with pytest.raises(HsmError, match="CKR_KEY_UNEXTRACTABLE"):
                keys.wrap_private(a, key.locator, KEK)
        finally:
            keys.delete_key(a, key.locator)
            keys.delete_key(b, key.locator)


@pytest.mark.parametrize("token", TOKENS)
def test_wrap_a_sealed_key_under_an_attacker_aes_key_is_refused(
    hsm: Hsm, shared: dict[int, Shared], token: str
) -> None:
    with session(token) as s:
        attacker = _attacker_aes(s)
        for item in shared.values():
            private = _private(s, item.key.locator)
            with refused("CKR_KEY_UNEXTRACTABLE"):
                s.wrap(attacker, private, KWP)
            # and not even under the duo's own KEK once sealed
            with refused("CKR_KEY_UNEXTRACTABLE"):
                s.wrap(_kek(s), private, KWP)


@pytest.mark.parametrize("token", TOKENS)
def test_wrap_the_kek_under_an_attacker_aes_key_is_refused(hsm: Hsm, token: str) -> None:
    with session(token) as s:
        attacker = _attacker_aes(s)
        # nodes: sealed at unwrap; the backup: wrappable by trusted keys only
        expected = "CKR_KEY_NOT_WRAPPABLE" if token == HOLDER else "CKR_KEY_UNEXTRACTABLE"
        with refused(expected):
            s.wrap(attacker, _kek(s), KWP)


# -- attack: the KEK to a foreign RSA public key ---------------------------------------------------


def test_wrap_the_kek_to_a_foreign_rsa_key_is_refused(hsm: Hsm) -> None:
    oaep = Mechanism.oaep_sha1()
    with session(HOLDER) as bk:
        for as_token_object in (False, True):
            public, _private_half = _attacker_rsa(bk, token=as_token_object)
            try:
                with refused("CKR_KEY_NOT_WRAPPABLE"):
                    bk.wrap(public, _kek(bk), oaep)
            finally:
                bk.destroy(public)
        # the attacker cannot make a key trusted: not when creating, setting or copying it
        public, _private_half = _attacker_rsa(bk)
        modulus = bk.get_bytes(public, CKA_MODULUS)
        assert modulus is not None
        foreign: list[tuple[int, AttrValue]] = [
            (CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, CKK_RSA), (CKA_TOKEN, False), (CKA_WRAP, True),
            (CKA_MODULUS, modulus), (CKA_PUBLIC_EXPONENT, b"\x01\x00\x01"),
        ]  # fmt: skip
        with refused("CKR_ATTRIBUTE_READ_ONLY"):
            bk.create([*foreign, (CKA_TRUSTED, True)])
        with refused("CKR_ATTRIBUTE_READ_ONLY"):
            bk.set_attributes(public, [(CKA_TRUSTED, True)])
        assert copy_object(bk, public, [(CKA_TRUSTED, True)]) == "CKR_ATTRIBUTE_READ_ONLY"
        # the layer never wraps to a key from the wire: no object is made from it, the call is refused
        before = len(bk.find([(CKA_CLASS, CKO_PUBLIC_KEY)]))
        attacker_spki = der.rsa_spki(int.from_bytes(modulus, "big"), 65537)
        with pytest.raises(HsmError, match="has not pinned it as trusted"):
            kek.wrap_kek_for(bk, KEK, attacker_spki)
        assert len(bk.find([(CKA_CLASS, CKO_PUBLIC_KEY)])) == before


def test_a_pinned_key_cannot_be_swapped_for_the_attackers(hsm: Hsm) -> None:
    trusted = pin_transport_key("B", transport="swap-transport")
    try:
        with session(HOLDER) as bk:
            (pinned,) = bk.find([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, trusted)])
            public, _private_half = _attacker_rsa(bk)
            modulus = bk.get_bytes(public, CKA_MODULUS)
            assert modulus is not None
            # change the pinned key's modulus to the attacker's: not modifiable, not copyable
            with refused("CKR_ACTION_PROHIBITED"):
                bk.set_attributes(pinned, [(CKA_MODULUS, modulus)])
            assert copy_object(bk, pinned, [(CKA_MODULUS, modulus)]) == "CKR_ACTION_PROHIBITED"
            assert copy_object(bk, pinned, []) == "CKR_ACTION_PROHIBITED"
        # the SO must see the fingerprint the operator confirmed, else nothing is pinned
        with session("B") as b:
            spki = kek.transport_public_key(b, "swap-transport")
        with so_session(HOLDER) as so, pytest.raises(HsmError, match="is not the confirmed"):
            kek.import_trusted_transport_key(so, "pin-wrong", spki, "00" * 32)
    finally:
        with session(HOLDER) as bk, session("B") as b:
            kek.delete_trusted_transport_key(bk, trusted)
            kek.delete_transport_key(b, "swap-transport")


def test_so_alone_sees_no_kek_and_cannot_wrap(hsm: Hsm) -> None:
    """The SO can pin a key but sees no private object: the KEK needs the user PIN as well."""
    with so_session(HOLDER) as so:
        assert so.find([(CKA_CLASS, CKO_SECRET_KEY)]) == []
        assert so.find([(CKA_CLASS, CKO_PRIVATE_KEY)]) == []
    with session(HOLDER), pytest.raises(HsmError, match="close it first"), so_session(HOLDER):
        pass


# -- attack: unwrap a bundle with the KEK as a generic secret, then derive -----------------------


@pytest.mark.parametrize("token", ["B", HOLDER])
def test_unwrap_a_bundle_as_a_generic_secret_is_refused(
    hsm: Hsm, shared: dict[int, Shared], token: str
) -> None:
    base: list[tuple[int, AttrValue]] = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_TOKEN, False)]
    with session(token) as s:
        for item in shared.values():

            def unwrap(template: list[tuple[int, AttrValue]], blob: bytes = item.bundle) -> Handle:
                return s.unwrap(_kek(s), blob, template, KWP)

            generic = [*base, (CKA_KEY_TYPE, CKK_GENERIC_SECRET)]
            # readable: the classic attack
            with refused("CKR_TEMPLATE_INCONSISTENT"):
                unwrap([*generic, (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)])
            # sensitive but extractable (then wrap it out under an attacker key)
            with refused("CKR_TEMPLATE_INCONSISTENT"):
                unwrap([*generic, (CKA_SENSITIVE, True), (CKA_EXTRACTABLE, True)])
            # sealed but with CKA_DERIVE (then derive a readable key from it)
            sealed = [(CKA_SENSITIVE, True), (CKA_EXTRACTABLE, False), (CKA_COPYABLE, False)]
            with refused("CKR_TEMPLATE_INCONSISTENT"):
                unwrap([*generic, *sealed, (CKA_DERIVE, True), (CKA_MODIFIABLE, False)])
            with refused("CKR_TEMPLATE_INCONSISTENT"):
                unwrap([*base, (CKA_KEY_TYPE, CKK_AES), *sealed, (CKA_DERIVE, True), (CKA_MODIFIABLE, False)])
            # modifiable (to switch CKA_DERIVE on afterwards)
            with refused("CKR_TEMPLATE_INCONSISTENT"):
                unwrap([*generic, *sealed, (CKA_DERIVE, False)])
            # what the template lets through is useless: no value, no derive, no changes
            handle = unwrap([*generic, *sealed, (CKA_DERIVE, False), (CKA_MODIFIABLE, False)])
            assert s.get_bytes(handle, CKA_VALUE) is None
            readable = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET), (CKA_TOKEN, False),
                        (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True), (CKA_VALUE_LEN, 16)]  # fmt: skip
            with refused("CKR_KEY_FUNCTION_NOT_PERMITTED", "CKR_KEY_TYPE_INCONSISTENT"):
                derive(s, handle, CKM_AES_ECB_ENCRYPT_DATA, bytes(16), readable)
            with refused("CKR_ACTION_PROHIBITED"):
                s.set_attributes(handle, [(CKA_DERIVE, True)])
            with refused("CKR_KEY_UNEXTRACTABLE"):
                s.wrap(_attacker_aes(s), handle, KWP)
            s.destroy(handle)


def test_a_kek_without_unwrap_template_would_give_the_key_away(hsm: Hsm) -> None:
    """Why the template matters: the same attack against a KEK as older ods-duo made it succeeds."""
    value = bytes(range(32))
    with session("A") as a, session("B") as b:
        kek_by_value(a, "legacy-kek", value)
        kek_by_value(b, "legacy-kek", value)
        key = keys.generate_keypair(a, 13)
        try:
            blob = a.wrap(_kek(a, "legacy-kek"), _private(a, key.locator), KWP)
            generic = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET), (CKA_TOKEN, False),
                       (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)]  # fmt: skip
            pkcs8 = b.get_bytes(b.unwrap(_kek(b, "legacy-kek"), blob, generic, KWP), CKA_VALUE)
            assert pkcs8 is not None and pkcs8[:1] == b"\x30"  # the private key, in clear
        finally:
            keys.delete_key(a, key.locator)
            kek.delete_kek(a, "legacy-kek")
            kek.delete_kek(b, "legacy-kek")


# -- attack: switch usage flags on the KEK or a key, then use it --------------------------------


@pytest.mark.parametrize("token", TOKENS)
def test_setting_decrypt_wrap_or_extractable_on_the_kek_is_refused(hsm: Hsm, token: str) -> None:
    with session(token) as s:
        handle = _kek(s)
        for change in ((CKA_DECRYPT, True), (CKA_ENCRYPT, True), (CKA_WRAP, False), (CKA_EXTRACTABLE, True),
                       (CKA_SENSITIVE, False), (CKA_DERIVE, True), (CKA_WRAP_WITH_TRUSTED, False),
                       (CKA_MODIFIABLE, True), (CKA_LABEL, "renamed")):  # fmt: skip
            with refused("CKR_ACTION_PROHIBITED", "CKR_ATTRIBUTE_READ_ONLY"):
                s.set_attributes(handle, [change])
        # and it still cannot be used as an AES oracle to open bundle blocks
        with refused("CKR_KEY_FUNCTION_NOT_PERMITTED"):
            s.decrypt(handle, bytes(16), CKM_AES_ECB)
        with refused("CKR_KEY_FUNCTION_NOT_PERMITTED"):
            s.encrypt(handle, bytes(16), CKM_AES_ECB)


@pytest.mark.parametrize("token", TOKENS)
def test_unsealing_a_sealed_key_is_refused(hsm: Hsm, shared: dict[int, Shared], token: str) -> None:
    with session(token) as s:
        for item in shared.values():
            private = _private(s, item.key.locator)
            for change in ((CKA_EXTRACTABLE, True), (CKA_SENSITIVE, False), (CKA_COPYABLE, True)):
                with refused("CKR_ATTRIBUTE_READ_ONLY", "CKR_ACTION_PROHIBITED"):
                    s.set_attributes(private, [change])
            if token != "A":  # copies: nothing at all can change
                with refused("CKR_ACTION_PROHIBITED"):
                    s.set_attributes(private, [(CKA_DECRYPT, True)])
                with refused("CKR_ACTION_PROHIBITED"):
                    s.set_attributes(private, [(CKA_DERIVE, True)])


def test_origin_key_usage_flags_stay_changeable_but_nothing_leaves(
    hsm: Hsm, shared: dict[int, Shared]
) -> None:
    """Residual (docs/security.md): the origin's key had to stay modifiable to be sealed later, so
    its usage flags can be switched (e.g. CKA_DECRYPT on RSA: a decryption oracle). Its private
    values still never leave."""
    rsa = shared[8]
    with session("A") as a:
        private = _private(a, rsa.key.locator)
        a.set_attributes(private, [(CKA_DECRYPT, True)])
        try:
            assert a.get_bytes(private, CKA_PRIVATE_EXPONENT) is None
            with refused("CKR_KEY_UNEXTRACTABLE"):
                a.wrap(_attacker_aes(a), private, KWP)
        finally:
            a.set_attributes(private, [(CKA_DECRYPT, False)])


# -- attack: C_CopyObject with a changed template -------------------------------------------------


@pytest.mark.parametrize("token", TOKENS)
def test_copy_object_with_a_changed_template_is_refused(
    hsm: Hsm, shared: dict[int, Shared], token: str
) -> None:
    changes: list[list[tuple[int, AttrValue]]] = [
        [(CKA_EXTRACTABLE, True)], [(CKA_SENSITIVE, False)], [(CKA_DECRYPT, True)], [(CKA_DERIVE, True)],
        [(CKA_MODIFIABLE, True)], [(CKA_LABEL, "copy")], [],
    ]  # fmt: skip
    with session(token) as s:
        targets = [_kek(s), *(_private(s, item.key.locator) for item in shared.values())]
        for target in targets:
            for template in changes:
                assert copy_object(s, target, template) == "CKR_ACTION_PROHIBITED", template


# -- attack: read the secret values ---------------------------------------------------------------


@pytest.mark.parametrize("token", TOKENS)
def test_secret_values_are_unreadable(hsm: Hsm, shared: dict[int, Shared], token: str) -> None:
    with session(token) as s:
        assert s.get_bytes(_kek(s), CKA_VALUE) is None
        assert s.get_bytes(_private(s, shared[13].key.locator), CKA_VALUE) is None
        assert s.get_bytes(_private(s, shared[8].key.locator), CKA_PRIVATE_EXPONENT) is None


# -- the KEK hand-over --------------------------------------------------------------------------


def test_an_intercepted_kek_blob_opens_only_sealed_through_the_transport_key(hsm: Hsm) -> None:
    """Someone with the receiver's PIN and the OAEP blob, while the transport key lives.

    The transport key's unwrap template refuses a readable, extractable, decrypting or modifiable
    KEK. Residual (SoftHSM refuses nested unwrap templates): a sealed copy WITHOUT the KEK's unwrap
    template is possible and would open bundles as readable secrets. The transport key therefore
    lives only for the hand-over: once it is deleted the blob opens nothing.
    """
    trusted = pin_transport_key("B", transport="intercept-transport")
    oaep = Mechanism.oaep_sha1()
    with session(HOLDER) as bk, session("B") as b:
        blob = kek.wrap_kek_to_trusted(bk, KEK, trusted)
        (transport,) = b.find([(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_LABEL, "intercept-transport")])
        aes = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, False)]
        off = [(CKA_ENCRYPT, False), (CKA_DECRYPT, False), (CKA_DERIVE, False), (CKA_COPYABLE, False)]
        sealed = [(CKA_SENSITIVE, True), (CKA_EXTRACTABLE, False)]
        for template in (
            [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET), (CKA_TOKEN, False),
             (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)],
            [*aes, (CKA_SENSITIVE, True), (CKA_EXTRACTABLE, True), *off, (CKA_MODIFIABLE, False)],
            [*aes, *sealed, (CKA_DECRYPT, True), (CKA_ENCRYPT, False), (CKA_DERIVE, False),
             (CKA_COPYABLE, False), (CKA_MODIFIABLE, False)],
            [*aes, *sealed, *off],  # modifiable: CKA_DECRYPT could be switched on later
        ):  # fmt: skip
            with refused("CKR_TEMPLATE_INCONSISTENT"):
                b.unwrap(transport, blob, template, oaep)
        # the residual, shown: a sealed copy without an unwrap template gets through
        # the residual, shown end to end: a sealed copy WITHOUT an unwrap template gets through ...
        usage = [(CKA_SIGN, False), (CKA_VERIFY, False), (CKA_UNWRAP, True), (CKA_MODIFIABLE, False)]
        bare = b.unwrap(transport, blob, [*aes, *sealed, *off, *usage], oaep)
        # ... and opens a bundle as a readable secret
        with session("A") as a:
            key = keys.generate_keypair(a, 13)
            bundle = keys.wrap_private(a, key.locator, KEK, seal=True)
            keys.delete_key(a, key.locator)
        generic = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_GENERIC_SECRET), (CKA_TOKEN, False),
                   (CKA_SENSITIVE, False), (CKA_EXTRACTABLE, True)]  # fmt: skip
        pkcs8 = b.get_bytes(b.unwrap(bare, bundle, generic, KWP), CKA_VALUE)
        assert pkcs8 is not None and pkcs8[:1] == b"\x30"
        b.destroy(bare)
        kek.delete_transport_key(b, "intercept-transport")
        kek.delete_trusted_transport_key(bk, trusted)
        assert not b.find([(CKA_LABEL, "intercept-transport")])  # nothing left to open the blob with


def test_trusted_objects_are_public_and_a_public_secret_lies_in_clear(hsm: Hsm, tmp_path: Path) -> None:
    """Why the KEK is never made trusted (SoftHSM: only the SO sets CKA_TRUSTED, on public objects)."""
    trusted = pin_transport_key("B", transport="public-transport")
    try:
        with session(HOLDER) as bk:
            (pinned,) = bk.find([(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_LABEL, trusted)])
            assert bk.get_bool(pinned, CKA_PRIVATE) is False
            assert bk.get_bool(pinned, CKA_TRUSTED) is True
            # an AES key made public, as a trusted KEK would have to be: its value is in the token file
            value = bytes(range(100, 132))
            public_aes = bk.create([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_TOKEN, True),
                                    (CKA_PRIVATE, False), (CKA_SENSITIVE, True), (CKA_VALUE, value),
                                    (CKA_LABEL, "public-aes")])  # fmt: skip
            try:
                files = [f.read_bytes() for f in hsm.tokendir.rglob("*.object")]
                assert any(value in data for data in files)
            finally:
                bk.destroy(public_aes)
            # while the private KEK's value appears nowhere in clear (it is encrypted under the PIN)
            assert bk.get_bytes(_kek(bk), CKA_VALUE) is None
    finally:
        with session(HOLDER) as bk, session("B") as b:
            kek.delete_trusted_transport_key(bk, trusted)
            kek.delete_transport_key(b, "public-transport")


# -- kek init --replace: the old KEK stays for old bundles ----------------------------------------


def test_replace_keeps_the_old_kek_unwrap_only_in_the_backup(hsm: Hsm) -> None:
    """Fresh tokens R-BK (holder) and R-N (node): bundle under KEK 1, replace by KEK 2, old bundle opens."""
    for label in ("R-BK", "R-N"):
        assert init_token(MODULE, label, PIN, SO_PIN) == "created"
    with session("R-BK") as bk:
        kek.generate_kek(bk, KEK)
    old_print = hand_over_kek("R-N", holder_token="R-BK")
    with session("R-N") as n:
        key = keys.generate_keypair(n, 13)
        public = keys.dnskey_public(n, key.locator)
        old_bundle = keys.wrap_private(n, key.locator, KEK, seal=True)
        keys.delete_key(n, key.locator)  # the node is lost; the backup keeps the bundle

    # retire: the backup's own holder transport key, pinned by its SO
    trusted_self = pin_transport_key("R-BK", holder=True, transport="retire-transport", holder_token="R-BK")
    with session("R-BK") as bk:
        retired = kek.retire_kek(bk, KEK, "retire-transport", trusted_self)
        assert retired == kek.retired_label(KEK, old_print)
        assert kek.retired_keks(bk, KEK) == {old_print: retired}
        assert not kek.has_kek(bk, KEK)
        kek.delete_transport_key(bk, "retire-transport")
        kek.delete_trusted_transport_key(bk, trusted_self)
        # unwrap only: it wraps nothing more, but the old bundle still opens with it
        with refused("CKR_KEY_FUNCTION_NOT_PERMITTED"):
            bk.wrap(_kek(bk, retired), _attacker_aes(bk), KWP)
        assert keys.unwrap_private(bk, old_bundle, retired, key, public)
        keys.delete_key(bk, key.locator)
        kek.generate_kek(bk, KEK)
        new_print = kek.kek_fingerprint(bk, KEK)
        assert new_print != old_print
        assert custody_problems(custody_report(bk, KEK), holder=True) == []

    # the node gets the new KEK, and for a restore from old bundles the retired one (unwrap only)
    with session("R-N") as n:
        assert kek.delete_kek(n, KEK)
    assert hand_over_kek("R-N", holder_token="R-BK") == new_print
    trusted = pin_transport_key("R-N", holder_token="R-BK")
    with session("R-BK") as bk, session("R-N") as n:
        kek.unwrap_kek(n, kek.wrap_kek_to_trusted(bk, retired, trusted), TRANSPORT, retired, wrap=False)
        kek.delete_transport_key(n, TRANSPORT)
        kek.delete_trusted_transport_key(bk, trusted)
        assert keys.unwrap_private(n, old_bundle, retired, key, public)
        assert keys.is_sealed(n, key.locator)
        assert custody_problems(custody_report(n, KEK), holder=False) == []


# -- residual risk: SoftHSM's token files -----------------------------------------------------------


def test_residual_write_access_to_the_token_files_defeats_every_attribute(hsm: Hsm) -> None:
    """SoftHSM keeps CKA_SENSITIVE/CKA_EXTRACTABLE as plain bytes in the object file, with no MAC.

    Whoever can write the token directory AND holds the user PIN flips them and reads the key.
    No attribute policy survives that; only an HSM whose objects live inside its boundary does
    (docs/security.md). Shown on a throw-away token with a key of known value.
    """
    assert init_token(MODULE, "TAMPER", PIN, SO_PIN) == "created"
    value = bytes(range(200, 232))
    before = set(hsm.tokendir.rglob("*.object"))
    with session("TAMPER") as t:
        kek_by_value(t, "victim", value)
    (victim,) = set(hsm.tokendir.rglob("*.object")) - before - {p for p in hsm.tokendir.rglob("token.object")}
    data = bytearray(victim.read_bytes())
    for attribute, flag in ((CKA_SENSITIVE, 0x00), (CKA_EXTRACTABLE, 0xFF)):
        # record: type (8 bytes, big endian), kind 1 = boolean (8 bytes), value (1 byte)
        at = data.find(struct.pack(">QQ", attribute, 1))
        assert at >= 0
        data[at + 16] = flag
    victim.write_bytes(bytes(data))
    with session("TAMPER") as t:  # the module re-reads the files: no session was open
        (handle,) = t.find([(CKA_CLASS, CKO_SECRET_KEY), (CKA_LABEL, "victim")])
        assert t.get_bytes(handle, CKA_VALUE) == value
        assert t.get_bool(handle, CKA_SENSITIVE) is False
