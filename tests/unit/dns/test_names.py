"""Tests for duo_ods.dns.names: the one normal form of a zone name."""

from __future__ import annotations

import pytest

from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import ZoneFileError

# --- zone names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        (".", "."),
        ("com", "com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("_tcp.example.com", "_tcp.example.com"),
        ("0-25.2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_normalize_zone_name(given: str, expected: str) -> None:
    assert normalize_zone_name(given) == expected


@pytest.mark.parametrize(
    "given",
    ["", "..", "a..b", "example.com..", " example.com", "exa mple.com", "-a.com", "a-.com", "a" * 64 + ".com",
     "0/25.2.0.192.in-addr.arpa", "*.example.com", "ex\\.ample.com", "bücher.example",
     ".".join(["a" * 63] * 4)],
)  # fmt: skip
def test_normalize_zone_name_refuses(given: str) -> None:
    with pytest.raises(ZoneFileError, match="invalid zone name"):
        normalize_zone_name(given)
