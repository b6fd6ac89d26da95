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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.journal import key_lock
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
    duo: Duo, client: NodeClient, receiver: str, *, replace: bool = False, confirm: Confirm | None = None
) -> str:
    """The KEK from the backup token into `receiver`'s, wrapped to a one-time RSA transport key the
    receiver makes, which the backup's SO pins only once `confirm` accepted its fingerprint.
    Returns the fingerprint of the KEK the receiver now holds."""
    offer = client.call(receiver, P.KEK_TRANSPORT_KEY)
    (confirm or confirmer(duo))(receiver, offer.fingerprint)
    client.call("backup", P.KEK_PIN, P.KekPinRequest(public=offer.public, fingerprint=offer.fingerprint))
    try:
        blob = client.call("backup", P.KEK_WRAP_FOR, P.KekWrapForRequest(public=offer.public)).blob
        got = client.call(receiver, P.KEK_UNWRAP, P.KekUnwrapRequest(blob=blob, replace=replace))
    finally:  # the pin was for this one hand-over
        client.call("backup", P.KEK_UNPIN, P.FingerprintRequest(fingerprint=offer.fingerprint))
    return got.fingerprint


def kek_init(
    duo: Duo, client: NodeClient, replace: bool = False, confirm: Confirm | None = None
) -> dict[str, Any]:
    with key_lock(duo, "kek init"):
        return _kek_init(duo, client, replace, confirm or confirmer(duo))


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
    made = client.call("backup", P.KEK_GENERATE, P.ReplaceRequest(replace=replace))
    for node in duo.nodes:
        got = send_kek(duo, client, node, replace=replace, confirm=confirm)
        if got != made.fingerprint:
            raise KekError(f"node {node}: KEK fingerprint {got} differs from the backup's {made.fingerprint}")
    log.info("KEK %s on %s", made.fingerprint, ", ".join(holders(duo)))
    return {
        "fingerprint": made.fingerprint, "holders": holders(duo), "replaced": bool(have),
        "retired": made.retired,
    }  # fmt: skip
