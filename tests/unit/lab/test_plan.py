"""The lab's address plan and config for N nodes (lab up --nodes N): two nodes exactly as before,
more nodes each on its own address, one secondary per node in split mode, failover over all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from duo_ods.bind.render import (
    check_zones_snippet,
    primaries_for,
    render_catalog_options,
    render_catalog_zones,
)
from duo_ods.cli.main import USAGE_EXIT, cli
from duo_ods.config.load import load_config
from duo_ods.dns.tsig import ensure_tsig_key
from duo_ods.errors import LabError
from duo_ods.lab import lab
from duo_ods.lab.net import Placed, address_plan, node_names

named_checkconf = pytest.mark.skipif(shutil.which("named-checkconf") is None, reason="needs named-checkconf")


def test_two_nodes_keep_the_plan_the_lab_always_had() -> None:
    plan = address_plan("127.0.14.10", 2, split=True)
    assert plan.base == "127.0.14.10"
    assert plan.nodes == (Placed("a", "127.0.14.11"), Placed("b", "127.0.14.12"))
    assert plan.secondaries == (Placed("ns1", "127.0.14.13"), Placed("ns2", "127.0.14.14"))
    assert plan.parent == "127.0.14.15"
    assert address_plan("127.0.14.10", 2).secondaries == (Placed("ns1", "127.0.14.13"),)


def test_three_nodes_split_one_secondary_each_all_addresses_distinct() -> None:
    plan = address_plan("127.0.14.10", 3, split=True)
    assert [n.name for n in plan.nodes] == ["a", "b", "c"]
    assert [s.name for s in plan.secondaries] == ["ns1", "ns2", "ns3"]
    every = [plan.base, *(n.address for n in plan.nodes), *(s.address for s in plan.secondaries), plan.parent]
    assert len(set(every)) == len(every) == 8
    assert plan.parent == "127.0.14.17"


def test_five_nodes_and_the_parent_does_not_move_with_split() -> None:
    assert node_names(5) == ["a", "b", "c", "d", "e"]
    assert address_plan("127.0.14.10", 5).parent == address_plan("127.0.14.10", 5, split=True).parent
    assert address_plan("127.0.14.10", 5, split=True).secondaries[-1] == Placed("ns5", "127.0.14.20")


@pytest.mark.parametrize("count", [0, 1, 6])
def test_node_count_out_of_range_refused(count: int) -> None:
    with pytest.raises(LabError, match="2 to 5"):
        address_plan("127.0.14.10", count)


def test_addresses_off_loopback_refused() -> None:
    with pytest.raises(LabError, match="loopback"):
        address_plan("127.255.255.250", 3)
    with pytest.raises(LabError, match="loopback"):
        address_plan("10.0.0.1", 2)


def _config(tmp_path: Path, nodes: int, split: bool) -> Path:
    options = lab.LabOptions(base_address="127.0.14.10", nodes=nodes, split=split)
    return lab.write_config(tmp_path / "lab", options)


def test_three_node_config_loads_with_every_node_and_token(tmp_path: Path) -> None:
    duo = load_config(_config(tmp_path, 3, split=True))
    assert list(duo.nodes) == ["a", "b", "c"]
    assert [n.config.token_label for n in duo.nodes.values()] == ["DUO-LAB-A", "DUO-LAB-B", "DUO-LAB-C"]
    assert [n.address for n in duo.nodes.values()] == ["127.0.14.11", "127.0.14.12", "127.0.14.13"]
    assert duo.config.transfer.mode == "split"
    # Split: each secondary from its own signer, so there are three sets of name servers.
    assert [primaries_for(duo, s.name, "split") for s in duo.config.secondaries] == [["a"], ["b"], ["c"]]


def test_three_node_failover_config_pulls_from_every_node_in_order(tmp_path: Path) -> None:
    duo = load_config(_config(tmp_path, 3, split=False))
    assert [s.name for s in duo.config.secondaries] == ["ns1"]
    assert primaries_for(duo, "ns1", "failover") == ["a", "b", "c"]
    text = render_catalog_zones(duo, "ns1", "failover")
    positions = [text.index(f"127.0.14.1{i} port 1053") for i in (1, 2, 3)]
    assert positions == sorted(positions), text


@named_checkconf
@pytest.mark.parametrize("split", [False, True])
def test_three_node_secondary_configs_pass_named_checkconf(tmp_path: Path, split: bool) -> None:
    duo = load_config(_config(tmp_path, 3, split=split))
    t = duo.config.transfer
    ensure_tsig_key(duo.tsig_key_path, t.key_name, t.algorithm)
    mode = "split" if split else "failover"
    for sec in duo.config.secondaries:
        zones = render_catalog_zones(duo, sec.name, mode)
        options = render_catalog_options(duo, sec.name, mode, "/tmp")
        check_zones_snippet(duo, zones, duo.tsig_key_path, options)


def test_two_node_config_unchanged_by_the_node_count(tmp_path: Path) -> None:
    text = _config(tmp_path, 2, split=False).read_text()
    assert "[nodes.c]" not in text
    assert "# Both nodes share this machine" in text
    assert text.count("[[secondaries]]") == 1


def test_lab_up_nodes_option_writes_the_config_and_refuses_out_of_range(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    done = CliRunner().invoke(cli, ["lab", "up", "--config-only", "--dir", str(lab_dir), "--nodes", "3",
                                    "--base-address", "127.0.14.10"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert list(load_config(lab_dir / "duo.toml").nodes) == ["a", "b", "c"]
    too_many = ["lab", "up", "--config-only", "--dir", str(tmp_path / "x"), "--nodes", "6"]
    refused = CliRunner().invoke(cli, too_many)
    assert refused.exit_code == USAGE_EXIT and "2<=x<=5" in refused.output
    assert not (tmp_path / "x" / "duo.toml").exists()
