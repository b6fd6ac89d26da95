"""Keys that roll by themselves (issue 15): no ods-duo command is typed after `lab up --parent`.

One lab (127.0.12.10, helper D's range) with a policy whose lifetimes are a few minutes: the key
origin's watcher rolls the ZSK, then the KSK, pushes the new DS to the lab's parent (a BIND primary
for test.) by a submit command and a TSIG-signed UPDATE, marks it seen once the parent serves it,
withdraws the old DS and marks it gone. Meanwhile a validating unbound anchored at the parent's key
(stub zones to the parent and the secondary, nothing cached) must answer with AD at every sample,
and both enforcers' key states must stay within the skew margin. While the submit command fails
(a flag file) and the parent serves a wrong DS, the rollover holds: nothing is marked seen, the
failure is retried and reported, and `check` names the parental agent.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.update
import pytest

from duo_ods import process
from duo_ods.dns.tsig import read_tsig_key
from duo_ods.protocol import ops as P
from tests.integration.conftest import Lab
from tests.support.fast_policy import SECONDS, fast_policy

pytestmark = pytest.mark.integration

BASE = "127.0.12.10"
RESOLVER = "127.0.12.17"
ZONE = "example.test"
INTERVAL = 5  # [rollover] interval: the scheduler's looks (s)
RETRY = 10  # [rollover] submit_retry (s)
ZSK_LIFETIME = 90
KSK_LIFETIME = 115
SAMPLE = 2.0
STEP_TIMEOUT = 300.0
HOLD = 15.0  # seconds the test keeps the parent wrong and the submit command failing
DS = {"unsubmitted": 0, "submit": 1, "submitted": 2, "seen": 3, "retract": 4, "retracted": 5}
QUERIES = [(ZONE, "SOA"), (ZONE, "DNSKEY"), (f"www.{ZONE}", "A"), (f"nothere.{ZONE}", "A")]

SUBMIT = """\
import os, sys, time
ds = sys.stdin.read()
log = os.path.join(os.path.dirname(__file__), "submitted.log")
held = os.path.exists(os.path.join(os.path.dirname(__file__), "hold"))
with open(log, "a") as out:
    out.write(f"{time.time():.0f} {os.environ['ODS_DUO_ACTION']} {os.environ['ODS_DUO_KEYTAG']} "
              f"{'refused' if held else 'ok'} {ds}")
if held:
    sys.exit("registry unavailable (the test's hold flag)")
"""


def autoroll_policy(folder: Path) -> Callable[[str], str]:
    """The fast policy with lifetimes of minutes, a scheduler that looks every few seconds, and a
    submit command (in `folder`, with its log and hold flag) before the UPDATE to the lab's parent."""

    def edit(config: str) -> str:
        config = fast_policy(config)
        config = config.replace(
            "\n[policy]\n",
            f'\n[policy]\nzsk_lifetime = "PT{ZSK_LIFETIME}S"\nksk_lifetime = "PT{KSK_LIFETIME}S"\n',
        )
        script = folder / "submit.py"
        script.write_text(SUBMIT)
        config = config.replace(
            'update_server = "', f'submit_command = ["{sys.executable}", "{script}"]\nupdate_server = "', 1
        )
        return config + f"\n[rollover]\ninterval = {INTERVAL}\nsubmit_retry = {RETRY}\n"

    return edit


@dataclass
class Watch:
    """A validating resolver's answers and `check`, sampled in a thread for the whole run."""

    lab: Lab
    samples: int = 0
    failures: list[str] = field(default_factory=list)
    checks: int = 0
    drift: list[str] = field(default_factory=list)  # differences seen by two checks in a row (20 s apart)
    transient: list[str] = field(default_factory=list)  # differences one check saw and the next did not
    last_drift: set[str] = field(default_factory=set)
    parent_warnings: list[str] = field(default_factory=list)
    shown: dict[int, float] = field(default_factory=dict)  # key tag -> when `key timeline` said it rolls
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        for name, rdtype in QUERIES:
            query = dns.message.make_query(name, rdtype, want_dnssec=True)
            try:
                reply = dns.query.udp(query, RESOLVER, port=53, timeout=5)
            except Exception as exc:  # a lost answer is a finding
                self.failures.append(f"{time.time():.0f} {name} {rdtype}: {exc}")
                continue
            rcode = dns.rcode.to_text(reply.rcode())
            if rcode not in ("NOERROR", "NXDOMAIN") or not reply.flags & dns.flags.AD:
                self.failures.append(
                    f"{time.time():.0f} {name} {rdtype}: {rcode}, AD {bool(reply.flags & dns.flags.AD)}"
                )
        self.samples += 1

    def look_at_timeline(self) -> None:
        """The first time `key timeline` names a key's rollover, and when it says it will be."""
        for step in timeline(self.lab):
            if step["next"].endswith(" rollover") and step["keytag"] not in self.shown:
                self.shown[step["keytag"]] = float(step["at"])

    def run(self) -> None:
        while not self.stop.wait(SAMPLE):
            self.sample()

    def run_checks(self) -> None:
        """`key timeline` and `check` take seconds each: in a thread of their own."""
        last_check = 0.0
        while not self.stop.wait(SAMPLE):
            self.look_at_timeline()
            if time.monotonic() - last_check > 20:
                last_check = time.monotonic()
                report = check(self.lab)
                self.checks += 1
                if not report["ok"]:
                    self.failures.append(f"check: {json.dumps(report)[:2000]}")
                problems = [p for z in report["zones"].values() for p in z["problems"]]
                # The enforcers run on their own clocks: a state change may land on one a few seconds
                # before the other. Within the skew margin that is expected; two checks 20 s apart
                # seeing the same key differ is not.
                found = {
                    k for p in problems if "enforcer key" in p["message"] for k in drifting_keys(p["message"])
                }
                self.drift += sorted(found & self.last_drift)
                self.transient += sorted(found - self.last_drift)
                self.last_drift = found


def drifting_keys(message: str) -> set[str]:
    """'KSK 123' labels from check's drift warning."""
    return set(re.findall(r"\b(?:KSK|ZSK|CSK) \d+", message))


def check(lab: Lab) -> dict[str, Any]:
    proc = lab.duo("--json", "check", "--warn-days", "0.0005", "--crit-days", "0.0002", check=False)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the submit command lives, logs what it got and looks for the hold flag. The flag is
    there from the start: the first KSK's DS is at the lab's parent already (nothing to submit), and
    the new KSK's submission must fail until the test has seen the rollover held."""
    folder = tmp_path_factory.mktemp("registry")
    (folder / "hold").write_text("the registry is down\n")
    return folder


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab], registry: Path) -> Lab:
    return make_lab(BASE, "--parent", edit=autoroll_policy(registry))


@pytest.fixture(scope="module")
def first(lab: Lab) -> dict[str, dict[str, Any]]:
    """The keys `lab up` made: role -> key (read before anything rolls)."""
    keys = key_states(lab)["a"]
    return {role: live(keys, role)[0] for role in ("KSK", "ZSK")}


@pytest.fixture(scope="module")
def resolver(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """unbound anchored at the parent's key: stub zones to the parent and the lab's secondary."""
    parent = lab.status["parent"]
    [secondary] = lab.status["secondaries"]
    folder = tmp_path_factory.mktemp("unbound")
    server = {
        "interface": RESOLVER, "outgoing-interface": RESOLVER, "port": "53", "do-ip6": "no",
        "chroot": '""', "username": '""', "directory": f'"{folder}"', "pidfile": f'"{folder}/unbound.pid"',
        "logfile": f'"{folder}/unbound.log"', "use-syslog": "no", "verbosity": "1",
        "do-not-query-localhost": "no", "module-config": '"validator iterator"',
        # nothing cached: every sample is validated from the parent's key down, afresh
        "cache-max-ttl": "0", "cache-max-negative-ttl": "0", "val-bogus-ttl": "0", "val-log-level": "2",
        "trust-anchor-file": f'"{parent["trust_anchor"]}"',
        "local-zone": '"test." nodefault',  # else unbound answers test. itself (RFC 6761)
    }  # fmt: skip
    lines = ["server:", *[f"    {k}: {v}" for k, v in server.items()]]
    lines += ["stub-zone:", '    name: "test."', f"    stub-addr: {parent['address']}@{parent['port']}"]
    lines += [
        "stub-zone:",
        f'    name: "{ZONE}."',
        f"    stub-addr: {secondary['address']}@{secondary['port']}",
    ]
    conf = folder / "unbound.conf"
    conf.write_text("\n".join(lines) + "\n")
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    record_path = folder / "unbound.json"
    record = process.spawn("unbound", ["unbound", "-d", "-c", str(conf)], folder / "stderr", record_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                dns.query.udp(dns.message.make_query(ZONE, "SOA"), RESOLVER, timeout=1)
                break
            except (dns.exception.Timeout, OSError):
                assert process.is_alive(record), (folder / "stderr").read_text()
                assert time.monotonic() < deadline, "unbound did not answer"
        yield RESOLVER
    finally:
        process.stop(record_path)


@pytest.fixture(scope="module")
def watch(lab: Lab, resolver: str) -> Iterator[Watch]:
    watching = Watch(lab)
    threads = [
        threading.Thread(target=watching.run, daemon=True),
        threading.Thread(target=watching.run_checks, daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield watching
    watching.stop.set()
    for thread in threads:
        thread.join(timeout=60)


def key_states(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """node -> the zone's keys, from its enforcer database (a read-only op, not a typed command)."""
    from duo_ods.config.load import load_config  # noqa: PLC0415
    from duo_ods.transport import transport_for  # noqa: PLC0415

    duo = load_config(Path(lab.config))
    transport = transport_for(duo)
    return {n: transport.call(n, P.KEY_STATES.name, {"zone": ZONE})["zones"][0]["keys"] for n in duo.nodes}


def live(keys: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    def dead(k: dict[str, Any]) -> bool:
        return not k["flags"]["introducing"] and all(r["state"] in ("hidden", "na") for r in k["records"])

    return sorted((k for k in keys if k["role"] == role and not dead(k)), key=lambda k: k["inception"])


def record(key: dict[str, Any], kind: str) -> str:
    return str(next(r["state"] for r in key["records"] if r["type"] == kind))


def wait_for(lab: Lab, what: str, test: Callable[[dict[str, list[dict[str, Any]]]], bool]) -> float:
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        states = key_states(lab)
        if test(states):
            return time.time()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not after {STEP_TIMEOUT:.0f} s: {json.dumps(states)[:3000]}\n{watcher_log(lab)}"
            )
        time.sleep(1)


def on_every_node(
    locator: str, test: Callable[[dict[str, Any]], bool]
) -> Callable[[dict[str, list[dict[str, Any]]]], bool]:
    def ok(states: dict[str, list[dict[str, Any]]]) -> bool:
        views = [next((k for k in keys if k["locator"] == locator), None) for keys in states.values()]
        return all(v is not None and test(v) for v in views)

    return ok


def watcher_log(lab: Lab) -> str:
    return (lab.dir / "log" / "watch-a.log").read_text(errors="replace")[-4000:]


def parent_ds(lab: Lab) -> set[int]:
    parent = lab.status["parent"]
    reply = dns.query.udp(
        dns.message.make_query(ZONE, "DS"), parent["address"], port=parent["port"], timeout=3
    )
    return {rr.key_tag for rrset in reply.answer for rr in rrset if rrset.rdtype == dns.rdatatype.DS}


def timeline(lab: Lab) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = json.loads(lab.duo("--json", "key", "timeline", ZONE).stdout)["steps"]
    return steps


def parent_update(lab: Lab, action: str, ds_text: str) -> None:
    """The test's own change at the parent (a wrong DS), with the parent's TSIG key."""
    parent = lab.status["parent"]
    key = read_tsig_key(Path(parent["tsig_key_file"]))
    update = dns.update.UpdateMessage("test.", keyring=key.keyring(), keyname=dns.name.from_text(key.name))
    rdata = dns.rdata.from_text("IN", "DS", ds_text)
    if action == "add":
        update.add(f"{ZONE}.", 20, rdata)
    else:
        update.delete(f"{ZONE}.", rdata)
    reply = dns.query.tcp(update, parent["address"], port=parent["port"], timeout=5)
    assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())


def margin() -> float:
    return INTERVAL + SECONDS["skew_margin"]


def rolled_when_shown(
    lab: Lab, watch: Watch, role: str, first: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """Wait for the role's successor; returns (when `key timeline` said it would roll, the successor)."""
    wait_for(lab, f"{role} successor", lambda s: all(len(live(keys, role)) == 2 for keys in s.values()))
    [successor] = [k for k in live(key_states(lab)["a"], role) if k["locator"] != first["locator"]]
    assert first["keytag"] in watch.shown, f"key timeline never showed the {role} {first['keytag']} rollover"
    return watch.shown[first["keytag"]], successor


def test_lab_status_names_the_parent_and_its_anchor(lab: Lab, first: dict[str, dict[str, Any]]) -> None:
    parent = lab.status["parent"]
    assert parent["address"] == "127.0.12.15" and parent["pid"] is not None
    assert "IN DNSKEY 257 3 13 " in Path(parent["trust_anchor"]).read_text()
    assert oct(Path(parent["tsig_key_file"]).stat().st_mode & 0o777) == "0o600"
    assert parent_ds(lab) == {first["KSK"]["keytag"]}, "the parent starts with the lab's DS"


def test_the_first_ksk_is_marked_seen_with_no_command(
    lab: Lab, watch: Watch, first: dict[str, dict[str, Any]]
) -> None:
    ksk = first["KSK"]
    wait_for(
        lab,
        "first KSK's DS seen",
        on_every_node(ksk["locator"], lambda k: k["flags"]["dsAtParent"] == DS["seen"]),
    )
    assert "served by every parental agent" in watcher_log(lab)


def test_the_zsk_rolls_when_the_timeline_said(
    lab: Lab, watch: Watch, first: dict[str, dict[str, Any]]
) -> None:
    zsk = first["ZSK"]
    shown, new = rolled_when_shown(lab, watch, "ZSK", zsk)
    states = key_states(lab)
    taken = [next(k for k in keys if k["locator"] == new["locator"]) for keys in states.values()]
    assert abs(taken[0]["inception"] - taken[1]["inception"]) <= 1, (
        "both enforcers took it in the same second"
    )
    late = new["inception"] - shown
    print(f"ZSK rollover: timeline said {shown:.0f}, successor taken {new['inception']} ({late:+.0f} s)")
    assert -1 <= late <= margin() + 10, f"the ZSK rolled {late:.0f} s after the timeline's time"
    # It completes while the KSK rolls (test_both_rollovers_complete).


def test_the_ksk_rolls_and_a_wrong_parent_holds_it(
    lab: Lab, watch: Watch, registry: Path, first: dict[str, dict[str, Any]]
) -> None:
    old = first["KSK"]
    hold = registry / "hold"
    shown, new = rolled_when_shown(lab, watch, "KSK", old)
    late = new["inception"] - shown
    print(f"KSK rollover: timeline said {shown:.0f}, successor taken {new['inception']} ({late:+.0f} s)")
    assert -1 <= late <= margin() + 10
    wait_for(lab, "new KSK's DS for the parent", on_every_node(
        new["locator"], lambda k: k["flags"]["dsAtParent"] in (DS["submit"], DS["submitted"])))  # fmt: skip
    wrong = f"{new['keytag']} 13 2 {'00' * 32}"
    parent_update(lab, "add", wrong)  # the parent serves a DS for the new key tag, with a wrong digest
    def refused() -> list[str]:
        return [line for line in (registry / "submitted.log").read_text().splitlines()
                if f"add {new['keytag']} refused" in line]  # fmt: skip

    # Held for HOLD seconds at least, and until the failed submit was retried (every RETRY s after
    # the scheduler's next look: on a loaded machine the second attempt may come after HOLD).
    held_until = time.monotonic() + HOLD
    deadline = held_until + 6 * RETRY
    while time.monotonic() < held_until or (len(refused()) < 2 and time.monotonic() < deadline):
        flags = {n: next(k for k in keys if k["locator"] == new["locator"])["flags"]["dsAtParent"]
                 for n, keys in key_states(lab).items()}  # fmt: skip
        assert DS["seen"] not in flags.values(), f"marked seen while the parent serves a wrong DS: {flags}"
        time.sleep(2)
    attempts = refused()
    assert len(attempts) >= 2, f"a failed submit is retried every {RETRY} s: {attempts}"
    assert f"IN DS {new['keytag']} 13 2 " in attempts[0], "the DS goes to the command on its stdin"
    assert "failed" in watcher_log(lab) and "registry unavailable" in watcher_log(lab), "and reported"
    warnings = [
        p["message"] for z in check(lab)["zones"].values() for p in z["problems"] if p["source"] == "parent"
    ]
    assert any("lacks key tag" in w or "unknown key tag" in w for w in warnings), warnings
    watch.parent_warnings += warnings
    # The registry comes back and the wrong DS goes: the scheduler submits, the parent serves it, seen.
    parent_update(lab, "remove", wrong)
    hold.unlink()
    wait_for(
        lab,
        "new KSK's DS seen",
        on_every_node(new["locator"], lambda k: k["flags"]["dsAtParent"] == DS["seen"]),
    )
    assert new["keytag"] in parent_ds(lab)
    gone = on_every_node(old["locator"], lambda k: k["flags"]["dsAtParent"] in (DS["retracted"], 0))
    wait_for(lab, "old KSK's DS marked gone", gone)
    # The enforcer may move the old KSK's DS to retracted by itself before the scheduler has had it
    # withdrawn at the parent: wait for the parent (its withdrawal is what the scheduler does next).
    deadline = time.monotonic() + STEP_TIMEOUT
    while old["keytag"] in parent_ds(lab):
        assert time.monotonic() < deadline, f"old DS not withdrawn from the parent\n{watcher_log(lab)}"
        time.sleep(1)
    log = (registry / "submitted.log").read_text()
    assert re.search(rf" remove {old['keytag']} ok ", log), log


def test_both_rollovers_complete(lab: Lab, first: dict[str, dict[str, Any]]) -> None:
    """The first ZSK's DNSKEY is withdrawn and the first KSK's DS is hidden on both nodes (its DNSKEY
    follows a DNSKEY TTL later; by then the next rollovers have begun: the lifetimes are minutes)."""
    wait_for(
        lab,
        "first ZSK withdrawn",
        on_every_node(first["ZSK"]["locator"], lambda k: record(k, "dnskey") == "hidden"),
    )
    wait_for(
        lab,
        "first KSK's DS hidden",
        on_every_node(first["KSK"]["locator"], lambda k: record(k, "ds") == "hidden"),
    )


def test_the_resolver_validated_every_sample_and_the_enforcers_stayed_in_step(watch: Watch) -> None:
    print(f"resolver samples: {watch.samples} ({len(QUERIES)} queries each), "
          f"failures: {len(watch.failures)}, checks: {watch.checks}, drift: {len(watch.drift)}, "
          f"transient differences: {len(watch.transient)}")  # fmt: skip
    print(
        "\n".join(
            ["failures:", *watch.failures[:20], "drift:", *watch.drift[:10], "transient:", *watch.transient]
        )
    )
    assert watch.samples > 60
    assert not watch.failures, "\n".join(watch.failures[:20])
    assert not watch.drift, "\n".join(watch.drift[:10])
