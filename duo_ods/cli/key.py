"""`ods-duo key ...` and `ods-duo kek init`: shared keys."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import click

from duo_ods.backup.snapshot import snapshot_after
from duo_ods.cli.context import Ctx, pass_ctx
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import DuoError, NodeError
from duo_ods.keys.flow import (
    ROLE_CHOICES,
    ZoneOutcome,
    create_key,
    create_keys,
    resume_pending,
    zones_without_keys,
)
from duo_ods.keys.kek import confirmer, kek_init
from duo_ods.keys.listing import ds_for_zone, list_keys
from duo_ods.keys.rollover import ROLLOVER_ROLES, mark_ds, rollover
from duo_ods.keys.rollover import resume as resume_rollover
from duo_ods.lab import secondaries
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.transport.local import LocalTransport

# csk is not offered: a CSK policy is refused with ODS 2.1.12 (config/model.py says why), so --role
# csk could only ever fail. It comes back when the policy may say keys = "csk" again.
OFFERED_ROLES = tuple(r for r in ROLE_CHOICES if r != "csk")
ROLE_ORDER = {"KSK": 0, "CSK": 1, "ZSK": 2}  # key list: the key the DS points to first


@click.group()
def key() -> None:
    """Shared keys: one key in every node's HSM and the backup, one DS."""


def _sync_lab_secondaries(ctx: Ctx) -> None:
    """Only secondaries ods-duo runs itself (the lab's, `dir` set); production ones: `bind-config`."""
    if ctx.duo.secondary_dirs:
        secondaries.sync_signed(ctx.duo, ctx.client)


def _warn(warning: str | None) -> None:
    if warning:
        click.echo(f"ods-duo: warning: {warning}", err=True)


@key.command("create")
@click.argument("zone_names", metavar="ZONE...", nargs=-1)
@click.option("--role", type=click.Choice(OFFERED_ROLES), help="default: pair (a KSK and a ZSK)")
@click.option("--origin", help="node whose HSM makes the key (default: key_origin, else the first node)")
@click.option(
    "--all-without-keys", "all_without_keys", is_flag=True,
    help="every zone on every node that has no live key yet (with the ZONEs given, if any)",
)  # fmt: skip
@pass_ctx
def key_create(
    ctx: Ctx, zone_names: tuple[str, ...], role: str | None, origin: str | None, all_without_keys: bool
) -> None:
    """Make keys on one node, copy them to every node and the backup, then let every enforcer use them.

    Many ZONEs go in batches under one key lock; a zone that fails (not on every node, keys already)
    is reported by name and the others go on. Exits 1 if any zone failed.
    """
    names = list(zone_names)
    if all_without_keys:
        names += [z for z in zones_without_keys(ctx.duo, ctx.client) if z not in names]
    elif not names:
        raise click.UsageError("name at least one ZONE, or --all-without-keys")
    if not names:
        ctx.emit({"keys": [], "zones": [], "failed": []}, "every zone has keys already")
        return
    if len(names) == 1 and not all_without_keys:
        outcomes = [ZoneOutcome(names[0], keys=create_key(ctx.duo, ctx.client, names[0], role, origin))]
    else:
        with ctx.progress("key create", total=len(names)):
            outcomes = create_keys(ctx.duo, ctx.client, names, role, origin)
    created = [k for o in outcomes for k in o.keys]
    if created:
        # The lab's secondaries take the newly signed zones while the backup snapshot is taken: the
        # two are independent (each node's agent serves one request at a time, in either order).
        with ThreadPoolExecutor(max_workers=2) as pool:
            synced = pool.submit(_sync_lab_secondaries, ctx)
            snapshot = pool.submit(snapshot_after, ctx.duo, ctx.client, "key create")
        synced.result()
        _warn(snapshot.result())
    lines = [
        f"zone {k.zone}: {k.role} {k.locator} (key tag {k.keytag}) made on {k.origin}, "
        f"in the enforcers of {', '.join(k.imported_on)}"
        for k in created
    ]
    failed = [o for o in outcomes if not o.ok]
    ctx.emit(
        {
            "keys": [asdict(k) for k in created],
            "zones": [o.to_json() for o in outcomes],
            "failed": [o.zone for o in failed],
        },
        "\n".join(lines),
    )
    if failed:
        for o in failed:
            click.echo(f"ods-duo: zone {o.zone}: {o.error}", err=True)
        click.echo(f"ods-duo: {len(failed)} of {len(outcomes)} zone(s) got no keys: "
                   f"{', '.join(o.zone for o in failed)}", err=True)  # fmt: skip
        raise SystemExit(1)


@key.command("resume")
@pass_ctx
def key_resume(ctx: Ctx) -> None:
    """Finish (or undo) what a killed or failed key command left; every key command does it first too."""
    finished = resume_pending(ctx.duo, ctx.client)
    if finished is None:
        ctx.emit({"finished": None}, "nothing to resume: no key command was left unfinished")
        return
    _sync_lab_secondaries(ctx)
    ctx.emit({"finished": finished.message, "nodes": finished.nodes}, finished.message)


@key.command("rollover")
@click.argument("zone_name", metavar="ZONE")
@click.option("--role", type=click.Choice(ROLLOVER_ROLES), required=True)
@click.option(
    "--origin", help="node whose HSM makes the successor (default: key_origin, else the first node)"
)
@click.option("--resume", is_flag=True, help="finish a rollover that started on some nodes only")
@pass_ctx
def key_rollover(ctx: Ctx, zone_name: str, role: str, origin: str | None, resume: bool) -> None:
    """Roll a zone's ZSK or KSK on every node in step, to one shared successor."""
    if resume:
        done = resume_rollover(ctx.duo, ctx.client, zone_name, role)
    else:
        done = rollover(ctx.duo, ctx.client, zone_name, role, origin)
    _sync_lab_secondaries(ctx)
    _warn(snapshot_after(ctx.duo, ctx.client, "key rollover"))
    text = (
        f"zone {done.zone}: {done.role} rollover to {done.locator} (key tag {done.keytag}) "
        f"started on {', '.join(done.started)}, {done.spread:.2f} s apart"
    )
    ctx.emit({**asdict(done), "spread": done.spread}, text)


def _ds_command(action: str) -> click.Command:
    @click.argument("zone_name", metavar="ZONE")
    @click.option("--keytag", type=int, required=True, help="the KSK whose DS is meant")
    @pass_ctx
    def command(ctx: Ctx, zone_name: str, keytag: int) -> None:
        result = mark_ds(ctx.duo, ctx.client, zone_name, keytag, action)
        _warn(snapshot_after(ctx.duo, ctx.client, f"key ds-{action}"))
        ran = ", ".join(
            f"{n}: {' + '.join(r['ran']) or 'already ' + action}" for n, r in result["nodes"].items()
        )
        ctx.emit(
            result, f"zone {result['zone']} key {keytag}: DS {action} ({ran}; {result['spread']:.2f} s apart)"
        )

    command.__doc__ = (
        "The parent publishes the DS of this KSK now; tell every enforcer at once."
        if action == "seen"
        else "The parent no longer publishes the DS of this KSK; tell every enforcer at once."
    )
    return click.command(f"ds-{action}")(command)


key.add_command(_ds_command("seen"))
key.add_command(_ds_command("gone"))


@key.command("list")
@click.argument("zone_name", metavar="[ZONE]", required=False)
@pass_ctx
def key_list(ctx: Ctx, zone_name: str | None) -> None:
    """Every key and its state on each node, side by side; differences flagged."""
    rows = sorted(
        list_keys(ctx.duo, ctx.client, zone_name),
        key=lambda r: (r["zone"], ROLE_ORDER.get(r["role"], 9), r["keytag"]),
    )
    if zone_name is not None and not rows:
        _require_zone(ctx, zone_name)
    nodes = list(ctx.duo.nodes)
    lines = [
        f"{'ZONE':24} {'ROLE':4} {'TAG':>5} {'LOCATOR':32} " + " ".join(f"{n.upper():10}" for n in nodes)
    ]
    for row in rows:
        states = " ".join(f"{row['nodes'][n]['state'] if n in row['nodes'] else '-':10}" for n in nodes)
        flag = "  << differs" if row["differs"] else ""
        lines.append(
            f"{row['zone']:24} {row['role']:4} {row['keytag']:>5} {row['locator']:32} {states}{flag}"
        )
    ctx.emit({"keys": rows, "ok": not any(r["differs"] for r in rows)}, "\n".join(lines))


def _require_zone(ctx: Ctx, zone_name: str) -> None:
    """A zone no node has is an error, not an empty answer (a node that does not answer is left to
    the command itself to report)."""
    zone = normalize_zone_name(zone_name)
    answered = False
    for node in ctx.duo.nodes:
        try:
            if zone in ctx.client.call(node, P.ZONE_LIST).names:
                return
        except DuoError:
            continue
        answered = True
    if answered:
        raise NodeError(f"zone {zone}: on no node (zone list shows the zones)")


@key.command("ds")
@click.argument("zone_name", metavar="ZONE")
@pass_ctx
def key_ds(ctx: Ctx, zone_name: str) -> None:
    """The DS (SHA-256) and DNSKEY to give the parent; warns when the nodes disagree."""
    _require_zone(ctx, zone_name)
    report = ds_for_zone(ctx.duo, ctx.client, zone_name)
    lines = [*report.ds, *report.dnskey, *[f"warning: {w}" for w in report.warnings]]
    ctx.emit(asdict(report), "\n".join(lines))


@click.group()
def kek() -> None:
    """The duo's key-encryption key (wraps every key that travels)."""


def parse_confirmations(values: tuple[str, ...]) -> dict[str, str]:
    """--confirm NODE=FINGERPRINT, as `kek offer` showed it on the node."""
    given: dict[str, str] = {}
    for value in values:
        node, sep, fingerprint = value.partition("=")
        if not sep or not node or not fingerprint:
            raise click.BadParameter(f"{value!r} is not NODE=FINGERPRINT", param_hint="--confirm")
        given[node] = fingerprint.strip().lower()
    return given


def ask_on_terminal(node: str, offered: str) -> bool:
    """The operator compares the fingerprint with what `kek offer` shows on the node itself."""
    if not sys.stdin.isatty():
        return False
    click.echo(f"node {node} offers transport key {offered}.")
    click.echo(f"On node {node}, `ods-duo kek offer --node {node}` must show the same fingerprint.")
    return click.confirm(f"Hand the KEK to node {node}'s key {offered}?", default=False)


CONFIRM_OPTION = click.option(
    "--confirm", "confirmations", multiple=True, metavar="NODE=FINGERPRINT",
    help="a node's transport key fingerprint, as `kek offer` shows it on the node (ssh nodes)",
)  # fmt: skip


@kek.command("init")
@click.option(
    "--replace", is_flag=True, help="make a new KEK; the backup keeps the old one to open old bundles"
)
@CONFIRM_OPTION
@pass_ctx
def kek_init_cmd(ctx: Ctx, replace: bool, confirmations: tuple[str, ...]) -> None:
    """Put one AES-256 KEK into every node's token and the backup's, never in clear.

    The backup token makes it and hands it only to transport keys its SO pinned once their
    fingerprints were confirmed: nodes on this machine by construction, nodes reached over ssh
    by --confirm (or at a prompt).
    """
    confirm = confirmer(ctx.duo, parse_confirmations(confirmations), ask_on_terminal)
    result = kek_init(ctx.duo, ctx.client, replace, confirm)
    ctx.emit(result, f"KEK {result['fingerprint']} in {', '.join(result['holders'])}")


@kek.command("offer")
@click.option("--node", "node_name", required=True, help="this machine's node")
@pass_ctx
def kek_offer(ctx: Ctx, node_name: str) -> None:
    """On the node itself: make (or show) its one-time transport key and its fingerprint, read from its
    own token, for the operator to confirm with `kek init --confirm` or `backup restore --confirm`."""
    ctx.duo.node(node_name)
    with NodeClient(LocalTransport(ctx.find_config(), verbose=ctx.verbose)) as local:
        offer = local.call(node_name, P.KEK_TRANSPORT_KEY)
    ctx.emit({"node": node_name, "fingerprint": offer.fingerprint}, f"node {node_name}: {offer.fingerprint}")


# --- issue 15: the rollover scheduler and the timeline (self-contained: duo_ods.keys.autoroll) -------


@key.command("schedule")
@click.option(
    "--once", is_flag=True, help="one pass, then exit (for a systemd timer); default: every interval"
)
@pass_ctx
def key_schedule(ctx: Ctx, once: bool) -> None:
    """Roll keys whose policy lifetime passed and confirm DS changes at the parent, in step on every node.

    The key origin's watcher does this by itself ([rollover] auto, interval); this is for a duo run
    without watchers, or to see what it would do now. Exits 1 when something failed (not when it waits).
    """
    from duo_ods.keys.autoroll import run_pass  # noqa: PLC0415 (only this command needs it)

    while True:
        outcomes = run_pass(ctx.duo, ctx.client)
        if any(o.changed for o in outcomes):
            _warn(snapshot_after(ctx.duo, ctx.client, "key schedule"))
        lines = [("done: " if o.done else "") + o.message for o in outcomes] or ["nothing is due"]
        ctx.emit({"outcomes": [o.to_json() for o in outcomes]}, "\n".join(lines))
        if once:
            if any(o.failed for o in outcomes):
                raise SystemExit(1)
            return
        time.sleep(ctx.duo.config.rollover.interval)


@key.command("timeline")
@click.argument("zone_name", metavar="[ZONE]", required=False)
@pass_ctx
def key_timeline(ctx: Ctx, zone_name: str | None) -> None:
    """For every key: its state, its next step and when, and what that waits on (time, a TTL, the
    parent, a person, the nodes). Read from the key origin's enforcer."""
    from duo_ods.keys.autoroll import timeline_of  # noqa: PLC0415

    steps = timeline_of(ctx.duo, ctx.client, zone_name)
    lines = [f"{'ZONE':24} {'ROLE':4} {'TAG':>5} {'NEXT':36} {'AT (UTC)':20} WAITS ON"]
    for s in steps:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.at)) if s.at is not None else "-"
        lines.append(f"{s.zone:24} {s.role:4} {s.keytag:>5} {s.next:36} {at:20} {s.waits_on}")
    ctx.emit({"steps": [s.to_json() for s in steps]}, "\n".join(lines))
