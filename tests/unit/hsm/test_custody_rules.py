"""custody_problems: the sealed-state rules, on reports built by hand (no token needed)."""

from __future__ import annotations

from dataclasses import replace

from duo_ods.hsm.custody import ObjectCustody, custody_problems
from duo_ods.hsm.kek import UNWRAP_TEMPLATE, retired_label

LOCATOR = "00112233445566778899aabbccddeeff"

SEALED_KEY = ObjectCustody(
    label=LOCATOR, object_class="private", key_type="EC", cka_id=LOCATOR, role="dnssec", private=True,
    sensitive=True, extractable=False, always_sensitive=False, never_extractable=False,
    wrap_with_trusted=False, trusted=None, copyable=False, modifiable=False, destroyable=True, wrap=None,
    unwrap=False, encrypt=None, decrypt=False, sign=True, derive=False, unwrap_template=False,
)  # fmt: skip
NODE_KEK = ObjectCustody(
    label="kek", object_class="secret", key_type="AES", cka_id="", role="kek", private=True, sensitive=True,
    extractable=False, always_sensitive=False, never_extractable=False, wrap_with_trusted=False,
    trusted=False, copyable=False, modifiable=False, destroyable=True, wrap=True, unwrap=True,
    encrypt=False, decrypt=False, sign=False, derive=False, unwrap_template=True,
)  # fmt: skip


def test_a_sealed_node_has_no_problems() -> None:
    assert custody_problems([SEALED_KEY, NODE_KEK], holder=False) == []


def test_an_open_key_is_a_problem_unless_in_its_copy_window() -> None:
    open_key = replace(SEALED_KEY, extractable=True, modifiable=True)
    assert custody_problems([open_key], holder=False) == [
        f"dnssec private {LOCATOR!r}: extractable (not sealed)"
    ]
    assert custody_problems([open_key], holder=False, open_keys={LOCATOR}) == []
    copyable = replace(SEALED_KEY, copyable=True, derive=True)
    assert custody_problems([copyable], holder=False) == [
        f"dnssec private {LOCATOR!r}: copyable is not false, derive is not false"
    ]


def test_kek_rules_depend_on_the_token_role() -> None:
    holder_kek = replace(NODE_KEK, extractable=True, wrap_with_trusted=True)
    assert custody_problems([holder_kek], holder=True) == []
    assert custody_problems([holder_kek], holder=False) == ["kek secret 'kek': extractable on a node"]
    anywhere = replace(holder_kek, wrap_with_trusted=False)
    assert custody_problems([anywhere], holder=True) == [
        "kek secret 'kek': extractable to any key (no CKA_WRAP_WITH_TRUSTED)"
    ]
    legacy = replace(NODE_KEK, modifiable=True, unwrap_template=False)
    (problem,) = custody_problems([legacy], holder=False)
    assert "modifiable is not false" in problem and "no unwrap template" in problem
    retired = replace(NODE_KEK, label=retired_label("kek", "ab" * 16), role="retired-kek")
    assert custody_problems([retired], holder=False) == [
        f"retired-kek secret {retired.label!r}: a retired KEK that still wraps"
    ]


def test_trusted_keys_belong_on_the_holder_only() -> None:
    trusted = ObjectCustody(
        label="pin-a", object_class="public", key_type="RSA", cka_id="", role="trusted-transport",
        private=False, sensitive=None, extractable=None, always_sensitive=None, never_extractable=None,
        wrap_with_trusted=None, trusted=True, copyable=False, modifiable=False, destroyable=True, wrap=True,
        unwrap=None, encrypt=False, decrypt=None, sign=None, derive=False, unwrap_template=False,
    )  # fmt: skip
    assert custody_problems([trusted], holder=True) == []
    assert custody_problems([trusted], holder=False) == [
        "trusted-transport public 'pin-a': a trusted key on a node token (nodes never hand the KEK on)"
    ]


def test_the_kek_unwrap_template_ends_with_modifiable_false() -> None:
    # SoftHSM 2.6.1 refuses every attribute after CKA_MODIFIABLE false in an unwrap template
    assert UNWRAP_TEMPLATE[-1][1] is False
    assert len(UNWRAP_TEMPLATE) == 5
