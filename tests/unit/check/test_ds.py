"""--ds: parsing and refusing, and which keys a DS points to."""

from __future__ import annotations

import dns.dnssec
import dns.rrset
import pytest

from duo_ods.check.ds import DsError, keys_pointed_to, parse_ds, parse_ds_options, points_to
from duo_ods.errors import DuoError
from tests.unit.check.signer import ORIGIN, Key

ZONE = "example.test"


@pytest.fixture(scope="module")
def ksk() -> Key:
    return Key.make(flags=257)


def ds_text(key: Key, digest: str = "SHA256", owner: str = "example.test.") -> str:
    return f"{owner} IN DS {dns.dnssec.make_ds(ORIGIN, key.dnskey, digest, validating=True)}"


def test_the_forms_key_ds_and_zone_files_use(ksk: Key) -> None:
    text = ds_text(ksk)
    ds = parse_ds(text)
    assert (ds.zone, ds.key_tag, ds.text) == (ZONE, ksk.tag, text)
    rdata = text.split(" DS ", 1)[1]
    for form in (
        f"Example.Test. 3600 IN DS {rdata}",
        f"example.test 86400 DS {rdata}",
        f"example.test. ds {rdata}",
    ):
        assert parse_ds(form).rdata == ds.rdata, form
    for digest in ("SHA1", "SHA384"):
        assert parse_ds(ds_text(ksk, digest)).rdata.digest_type in {1, 4}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("garbage", r"^--ds 'garbage': not a DS record \(expected 'ZONE\. \[TTL\] \[IN\] DS "),
        ("", r"^--ds '': not a DS record"),
        ("example.test. IN DNSKEY 257 3 13 AAAA", "not a DS record"),
        ("example.test. IN DS 12345 13 2", "not a DS record: "),
        ("example.test. IN DS 12345 13 2 nothex", "not a DS record: "),
        ("example.test. IN DS 12345 13 2 00ff", "not a DS record: digest length inconsistent"),
        ("example.test. IN DS 123456 13 2 " + "00" * 32, "not a DS record: "),
        (
            "example.test. IN DS 12345 13 7 00ff",
            r"digest type 7 is not one of 1 \(SHA1\), 2 \(SHA256\), 4 \(SHA384\)",
        ),
        ("example.test. IN DS 12345 13 3 " + "00" * 32, "digest type 3 is not one of"),
        ("example.test. CH IN DS 12345 13 2 " + "00" * 32, "not a DS record"),
        ("a..b. IN DS 12345 13 2 " + "00" * 32, "not a DS record: "),
    ],
)
def test_unparseable_ds_is_one_line_naming_the_option(text: str, why: str) -> None:
    with pytest.raises(DsError, match=why) as caught:
        parse_ds(text)
    assert isinstance(caught.value, DuoError)  # the CLI prints it as one line and exits 1
    assert "\n" not in str(caught.value) and str(caught.value).startswith("--ds ")


def test_a_ds_for_another_zone_is_refused(ksk: Key) -> None:
    other = ds_text(ksk, owner="other.test.")
    assert set(parse_ds_options([ds_text(ksk), other], None)) == {ZONE, "other.test"}
    with pytest.raises(
        DsError, match=r"a DS for other\.test, not for a zone being checked \(example\.test\)"
    ):
        parse_ds_options([ds_text(ksk), other], [ZONE])
    assert [d.key_tag for d in parse_ds_options([ds_text(ksk)], [ZONE])[ZONE]] == [ksk.tag]


def test_which_keys_a_ds_points_to(ksk: Key) -> None:
    zsk = Key.make()
    keys = dns.rrset.from_rdata(ORIGIN, 300, ksk.dnskey, zsk.dnskey)
    ds = parse_ds(ds_text(ksk)).rdata
    assert keys_pointed_to([ds], keys) == {ksk.tag}
    assert keys_pointed_to([parse_ds(ds_text(zsk)).rdata], keys) == {zsk.tag}  # resolvers ignore the SEP flag
    assert keys_pointed_to([parse_ds(ds_text(ksk, "SHA384")).rdata], keys) == {ksk.tag}
    assert keys_pointed_to([parse_ds(ds_text(ksk, "SHA1")).rdata], keys) == {
        ksk.tag
    }  # a parent may still have it
    wrong = ds.replace(digest=bytes(32))
    assert keys_pointed_to([wrong], keys) == set()
    assert not points_to(ds.replace(algorithm=8), ORIGIN, ksk.dnskey)  # type: ignore[arg-type]
    not_a_zone_key = ksk.dnskey.replace(flags=1)
    its_ds = parse_ds(f"example.test. IN DS {dns.dnssec.make_ds(ORIGIN, not_a_zone_key, 'SHA256')}").rdata
    assert not points_to(its_ds, ORIGIN, not_a_zone_key)  # type: ignore[arg-type]
