"""Rendered files: exact output for the default policy, and schema-valid output for every variant."""

import shutil
from pathlib import Path

import pytest

from duo_ods.config.model import NodeConfig, PolicyConfig
from duo_ods.config.resolve import Node, NodePaths
from duo_ods.errors import RenderError
from duo_ods.node.configs import render_node_configs
from duo_ods.render.engine import render, write_atomic
from duo_ods.render.validate import check_ods_xml
from duo_ods.render.views import TsigView, addns_view, kasp_view

DATA = Path(__file__).parent / "data"


def test_default_kasp_exact() -> None:
    assert render("kasp.xml.j2", kasp_view(PolicyConfig())) == (DATA / "kasp-default.xml").read_text()


def test_propagation_delay_includes_skew_margin() -> None:
    view = kasp_view(PolicyConfig(zone_propagation_delay="PT5M", skew_margin="PT1M"))
    assert view.zone_propagation_delay == "PT360S"


VARIANTS = [
    "",
    "[policy]\nalgorithm = 8\nbits = 3072\n",
    "[policy]\nalgorithm = 15\n",
    "[policy]\nnsec3 = false\n",
    "[policy]\nnsec3_opt_out = true\nnsec3_iterations = 5\nnsec3_salt_length = 8\n",
    '[policy]\nvalidity_keyset = "P7D"\nserial = "counter"\n',
    '[[secondaries]]\nname = "ns1"\naddress = "127.0.0.31"\n'
    '[[secondaries]]\nname = "ns2"\naddress = "127.0.0.32"\nport = 5353\n',
]


@pytest.mark.parametrize("extra", VARIANTS)
def test_every_variant_validates_against_ods_schemas(make_duo, extra: str) -> None:  # type: ignore[no-untyped-def]
    duo = make_duo(extra)
    for node in duo.nodes.values():
        files = render_node_configs(duo, node, ["example.test", "a.example", "."])
        assert [f.schema for f in files] == ["conf", "kasp", "zonelist", "addns"]
        # render_node_configs ran xmllint; run it again here so the test says so itself.
        for f in files:
            check_ods_xml(f.text, f.schema, f.path.name)


def test_conf_xml_content_and_modes(make_duo) -> None:  # type: ignore[no-untyped-def]
    duo = make_duo()
    files = {f.path.name: f for f in render_node_configs(duo, duo.nodes["b"], [])}
    conf = files["conf.xml"].text
    assert "<TokenLabel>DUO-B</TokenLabel>" in conf
    assert "<PIN>1234</PIN>" in conf
    assert "<ManualKeyGeneration/>" in conf
    assert "<AllowExtraction/>" in conf
    assert "<Interface><Address>127.0.0.12</Address><Port>5302</Port></Interface>" in conf
    assert files["conf.xml"].mode == 0o600  # holds the PIN
    assert files["addns.xml"].mode == 0o600  # will hold TSIG secrets


def test_kasp_keys_and_nsec3() -> None:
    text = render("kasp.xml.j2", kasp_view(PolicyConfig()))
    assert text.count("<ManualRollover/>") == 2
    assert "<KSK>" in text and "<ZSK>" in text and "<CSK>" not in text
    assert "<Purge>PT" not in text  # (the comment mentions the element; no element is rendered)
    assert '<Salt length="0"/>' in text
    assert "<NSEC3>\n\t\t\t\t<TTL>PT0S</TTL>" in text  # TTL must be NSEC3's first child


def test_addns_transfer_and_notify() -> None:
    node = Node(
        "a",
        NodeConfig(address="127.0.0.11", base_dir="/x", token_label="A"),
        NodePaths(Path("/x")),
        Path("/x/input"),
        Path("/x/pin"),
    )
    tsig = TsigView("duo-transfer", "hmac-sha256", "c2VjcmV0")
    text = render("addns.xml.j2", addns_view(node, ["127.0.0.1/32"], tsig))
    # Its own relay by address (ods-signerd's TSIG on long AXFRs is not BIND's), ods-duo check by key.
    assert "<Peer><Prefix>127.0.0.11/32</Prefix></Peer>" in text
    assert "<Peer><Prefix>127.0.0.1/32</Prefix><Key>duo-transfer</Key></Peer>" in text
    assert text.count("<Peer>") == 2
    # NOTIFY only to the relay (default port 1053), signed.
    assert "<Remote><Address>127.0.0.11</Address><Port>1053</Port><Key>duo-transfer</Key></Remote>" in text
    assert text.count("<Remote>") == 1
    assert "<Name>duo-transfer</Name>" in text and "<Secret>c2VjcmV0</Secret>" in text
    check_ods_xml(text, "addns", "addns.xml")
    relayed = Node(
        "a",
        NodeConfig(address="127.0.0.1", port=5300, relay_address="192.0.2.1", relay_port=53, base_dir="/x",
                   token_label="A"),
        NodePaths(Path("/x")), Path("/x/input"), Path("/x/pin"),
    )  # fmt: skip
    text = render("addns.xml.j2", addns_view(relayed, ["127.0.0.0/8"], tsig))
    assert "<Peer><Prefix>192.0.2.1/32</Prefix></Peer>" in text
    assert "<Remote><Address>192.0.2.1</Address><Port>53</Port><Key>duo-transfer</Key></Remote>" in text
    check_ods_xml(text, "addns", "addns.xml")


def test_invalid_xml_is_refused_with_file_name() -> None:
    with pytest.raises(
        RenderError, match=r"^kasp.xml does not validate against /usr/share/opendnssec/kasp.rng"
    ):
        check_ods_xml("<KASP><Policy/></KASP>", "kasp", "kasp.xml")


def test_write_atomic_mode_and_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.xml"
    write_atomic(target, "one", 0o600)
    write_atomic(target, "two", 0o600)
    assert target.read_text() == "two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["f.xml"]  # no temp file left


@pytest.mark.skipif(shutil.which("ods-kaspcheck") is None, reason="needs ods-kaspcheck (opendnssec)")
def test_a_policy_ods_kaspcheck_refuses_is_refused_before_use(make_duo) -> None:  # type: ignore[no-untyped-def]
    # Valid XML, but re-signing every 20 s is more than the 99 a day a datecounter serial can count.
    duo = make_duo('[policy]\nresign = "PT20S"\nserial = "datecounter"\n')
    node = duo.nodes["a"]
    with pytest.raises(RenderError, match=r"kasp.xml: ods-kaspcheck: ERROR: .*datecounter"):
        render_node_configs(duo, node, [])
    assert not node.paths.kasp_xml.exists()
    duo = make_duo('[policy]\nresign = "PT20S"\nserial = "unixtime"\n')
    assert len(render_node_configs(duo, duo.nodes["a"], [])) == 4
