"""BIND's pacing must not hold a changed zone back (issue 14's latency target): the relay sends each
NOTIFY at once (notify-delay 0) and paces SOA queries and NOTIFYs with a 10 ms tick, not the default
0.5 s one; the lab secondary paces its SOA queries to the relays the same way. Rendered configs pass
named-checkconf."""

from __future__ import annotations

from pathlib import Path

from duo_ods.bind.relay import render_relay_conf
from duo_ods.bind.render import check_named_conf, render_named_conf
from duo_ods.config.resolve import Duo
from tests.unit.bind.test_render import duo, named_checkconf

__all__ = ["duo"]  # the fixture


def test_the_relay_notifies_at_once_and_paces_by_a_short_tick(duo: Duo) -> None:
    text = render_relay_conf(duo, duo.nodes["a"])
    assert "\tnotify-delay 0;" in text
    assert "\tserial-query-rate 1000;" in text
    assert "\tnotify-rate 1000;" in text


def test_the_lab_secondary_paces_its_soa_queries_by_a_short_tick(duo: Duo, tmp_path: Path) -> None:
    text = render_named_conf(
        duo, "s1", tmp_path, duo.tsig_key_path, tmp_path / "zones.conf", options_file=tmp_path / "opts.conf"
    )
    assert "\tserial-query-rate 1000;" in text


@named_checkconf
def test_the_relay_config_passes_named_checkconf(duo: Duo, tmp_path: Path) -> None:
    node = duo.nodes["a"]
    text = render_relay_conf(duo, node)
    key = node.relay_dir / "transfer.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(duo.tsig_key_path.read_text())
    (node.relay_dir / "zones.conf").write_text("")
    conf = tmp_path / "named.conf"
    conf.write_text(text)
    check_named_conf(conf)
