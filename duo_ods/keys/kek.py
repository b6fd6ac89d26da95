"""`kek init`: one AES-256 KEK in every node's token and in the backup's, never in clear.

The backup token makes the KEK and is the only token that can hand it on (its copies on the
nodes are sealed: they wrap and unwrap keys, and never leave). Each node makes an RSA transport
key in its own token and sends only the public half; the backup's SO pins that key as trusted
once its fingerprint is confirmed, the backup wraps the KEK to it (RSA-OAEP; the token refuses
any key its SO did not pin), and the node unwraps it. Fingerprints prove that all tokens hold
the same KEK.

Confirming a transport key: a node on this machine (local transport) is confirmed by
construction (its key comes from a process on this machine, not from a network). A node reached
over ssh must be confirmed by the operator: run `ods-duo kek offer --node NODE` on the node
(it shows the fingerprint read from its own token) and pass it as `--confirm NODE=FINGERPRINT`,
or answer the prompt on a terminal. A key from the wire alone is never trusted.

Crash safety (issue 12): `kek init` runs under the key lock and is journalled like the key commands
(duo_ods.keys.journal). Its commit point is the record written before the backup is asked to make
the new KEK; a run killed before it changed nothing and is undone by dropping its record. From the
commit point it is finished forward, idempotently: the backup makes the new KEK unless it holds one
other than the recorded old KEK already (the killed run made it), then every node whose KEK is not
the backup's gets it, and every SO pin the run recorded before asking for it is taken back. The next
key command, `ods-duo key resume` or `kek init` again does it and says which. A node reached over
ssh needs its transport key confirmed again (`kek init --replace --confirm NODE=FINGERPRINT`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.flow import finish_pending
from duo_ods.keys.journal import Journal, Recorder, journal_path, key_lock, pending
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient

log = logging.getLogger(__name__)

REPLACE_WARNING = (
    "the backup token keeps the old KEK for unwrapping only, so `backup verify` still opens the bundles "
    "made under it; keys already in the nodes' HSMs keep working"
)


class KekError(DuoError):
    """The KEK cannot be set up as asked."""


def holders(duo: Duo) -> list[str]:
    """Every transport target that holds the KEK: the nodes, then the backup store."""
    return [*duo.nodes, "backup"]


def kek_status(duo: Duo, client: NodeClient) -> dict[str, P.KekStatusReply]:
    return {target: client.call(target, P.KEK_STATUS) for target in holders(duo)}


Confirm = Callable[[str, str], None]  # (node, offered fingerprint); raises to refuse
Ask = Callable[[str, str], bool]  # (node, offered fingerprint) -> the operator confirmed it


def confirmer(duo: Duo, given: Mapping[str, str] | None = None, ask: Ask | None = None) -> Confirm:
    """Who vouches for a node's transport key: this machine (local nodes), the operator's
    `--confirm NODE=FINGERPRINT`, or the operator's answer at a prompt."""
    given = dict(given or {})

    def confirm(node: str, offered: str) -> None:
        if duo.nodes[node].ssh is None:
            return  # made by a process on this machine: nothing crossed a network
        if node in given:
            if given[node] != offered:
                raise KekError(
                    f"node {node}: its transport key's fingerprint is {offered}, not the confirmed "
                    f"{given[node]}: the KEK is not handed over"
                )
            return
        if ask is not None and ask(node, offered):
            return
        raise KekError(
            f"node {node} is reached over ssh, so its transport key must be confirmed: on node {node} run "
            f"`ods-duo kek offer --node {node}`, check it shows {offered}, "
            f"and pass --confirm {node}={offered}"
        )

    return confirm


def send_kek(
    duo: Duo,
    client: NodeClient,
    receiver: str,
    *,
    replace: bool = False,
    confirm: Confirm | None = None,
    retired: str | None = None,
    journal: Recorder | None = None,
) -> str:
    """The KEK from the backup token into `receiver`'s, wrapped to a one-time RSA transport key the
    receiver makes, which the backup's SO pins only once `confirm` accepted its fingerprint.
    `retired`: the backup's retired KEK of that fingerprint instead, stored unwrap only (a node being
    restored from bundles made before `kek init --replace`). `journal`: the pin is recorded there
    before the SO makes it, so a killed run's pin is taken back. Returns the fingerprint of the KEK
    the receiver now holds (for a retired one: the asked fingerprint, see keyops.kek_unwrap)."""
    offer = client.call(receiver, P.KEK_TRANSPORT_KEY)
    (confirm or confirmer(duo))(receiver, offer.fingerprint)
    if journal is not None:
        journal.remember("pins", offer.fingerprint)
    client.call("backup", P.KEK_PIN, P.KekPinRequest(public=offer.public, fingerprint=offer.fingerprint))
    try:
        wrap = P.KekWrapForRequest(public=offer.public, retired=retired)
        blob = client.call("backup", P.KEK_WRAP_FOR, wrap).blob
        unwrap = P.KekUnwrapRequest(blob=blob, replace=replace, retired=retired)
        got = client.call(receiver, P.KEK_UNWRAP, unwrap)
    finally:  # the pin was for this one hand-over
        client.call("backup", P.KEK_UNPIN, P.FingerprintRequest(fingerprint=offer.fingerprint))
    return got.fingerprint


def unpin_left(client: NodeClient, journal: Journal) -> int:
    """Take back every SO pin a (killed) run recorded: no trusted transport key outlives its hand-over."""
    count = 0
    for fingerprint in journal.details.get("pins", []):
        count += client.call("backup", P.KEK_UNPIN, P.FingerprintRequest(fingerprint=fingerprint)).count
    return count


KEK_INIT = "kek init"


def kek_init(
    duo: Duo, client: NodeClient, replace: bool = False, confirm: Confirm | None = None
) -> dict[str, Any]:
    confirm = confirm or confirmer(duo)
    with key_lock(duo, "kek init"):
        left = pending(duo)
        if left is not None and left.command == KEK_INIT:
            # a killed `kek init`: finish it (this run's confirmations vouch for the nodes' keys)
            return finish_kek(duo, client, left, confirm)
        finish_pending(duo, client)  # another command's leftovers first, as every key command does
        return _kek_init(duo, client, replace, confirm)


def _kek_init(duo: Duo, client: NodeClient, replace: bool, confirm: Confirm) -> dict[str, Any]:
    client.call("backup", P.BACKUP_INIT)
    status = kek_status(duo, client)
    have = [t for t, s in status.items() if s.has_kek]
    if have and not replace:
        fingerprints = {status[t].fingerprint for t in have}
        if len(have) == len(status) and len(fingerprints) == 1:
            raise KekError(
                f"the KEK is set up already on {', '.join(have)}; --replace replaces it ({REPLACE_WARNING})"
            )
        raise KekError(
            f"a KEK exists on {', '.join(have)} but not everywhere or not the same; "
            f"--replace makes a new one everywhere ({REPLACE_WARNING})"
        )
    # Before anything changes: the record that lets the next command finish (or drop) this run.
    details = {"replace": replace, "old": status["backup"].fingerprint, "replaced": bool(have)}
    journal = Recorder(journal_path(duo), Journal(KEK_INIT, "", time.time(), details=details))
    return _distribute(duo, client, journal, confirm)


def _distribute(duo: Duo, client: NodeClient, journal: Recorder, confirm: Confirm) -> dict[str, Any]:
    """From the commit point on, forward and idempotent: a new KEK in the backup, then on every node."""
    details = journal.journal.details
    old = details.get("old")
    journal.commit()
    try:
        backup = client.call("backup", P.KEK_STATUS)
        retired = None
        if backup.fingerprint is None or backup.fingerprint == old:
            # (a killed run may have retired the old KEK already: the backup then has none, and
            # retiring again is a no-op; the retirement itself is idempotent too)
            made = client.call("backup", P.KEK_GENERATE, P.ReplaceRequest(replace=old is not None))
            fingerprint, retired = made.fingerprint, made.retired
        else:
            fingerprint = backup.fingerprint  # the killed run made it
        for node in duo.nodes:
            have = client.call(node, P.KEK_STATUS)
            if have.fingerprint == fingerprint:
                continue
            journal.step(f"send {node}")
            got = send_kek(duo, client, node, replace=have.has_kek, confirm=confirm, journal=journal)
            if got != fingerprint:
                raise KekError(f"node {node}: KEK fingerprint {got} differs from the backup's {fingerprint}")
        unpin_left(client, journal.journal)
    except DuoError as exc:
        raise KekError(
            f"{exc}; the backup and some nodes may hold the new KEK already and the key journal keeps "
            "this run: `ods-duo kek init` again (ssh nodes: with --confirm), `ods-duo key resume` or the "
            "next key command finishes it"
        ) from exc
    journal.close()
    log.info("KEK %s on %s", fingerprint, ", ".join(holders(duo)))
    return {
        "fingerprint": fingerprint, "holders": holders(duo), "replaced": bool(details.get("replaced")),
        "retired": retired,  # None when a killed run made the new KEK (and retired the old one)
    }  # fmt: skip


def finish_kek(duo: Duo, client: NodeClient, left: Journal, confirm: Confirm | None = None) -> dict[str, Any]:
    """Finish (past its commit point) or drop (before it) a killed `kek init`; under the key lock.

    The result has the message in "resumed". Raises, keeping the journal, when it cannot be done
    yet (a node does not answer, an ssh node's transport key is not confirmed)."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(left.started))
    what = f"{KEK_INIT}{' --replace' if left.details.get('replace') else ''} (started {started})"
    if not left.committed:
        journal_path(duo).unlink(missing_ok=True)
        message = f"undid the unfinished {what}: it had changed nothing yet; every token keeps its KEK"
        log.warning("%s", message)
        status = kek_status(duo, client)
        fingerprint = status["backup"].fingerprint
        return {"fingerprint": fingerprint, "holders": holders(duo), "replaced": False, "resumed": message}
    log.warning("finishing the interrupted %s", what)
    result = _distribute(duo, client, Recorder(journal_path(duo), left), confirm or confirmer(duo))
    result["resumed"] = (
        f"finished the interrupted {what}: KEK {result['fingerprint']} on {', '.join(result['holders'])}"
    )
    log.warning("%s", result["resumed"])
    return result
