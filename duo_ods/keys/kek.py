"""`kek init`: one AES-256 KEK in every node's token and in the backup's, never in clear.

The first node makes the KEK. Every other holder makes an RSA transport key in its
own token and sends only the public half; the first node wraps the KEK to it
(RSA-OAEP) and the holder unwraps it into its token. Fingerprints prove that all
tokens hold the same KEK.
"""

from __future__ import annotations

import logging
from typing import Any

from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.journal import key_lock
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient

log = logging.getLogger(__name__)

REPLACE_WARNING = (
    "replacing the KEK makes every existing key bundle (in the backup store) unreadable with the new KEK: "
    "keys already in the nodes' HSMs keep working, but they can no longer be copied or restored from "
    "those bundles"
)


class KekError(DuoError):
    """The KEK cannot be set up as asked."""


def holders(duo: Duo) -> list[str]:
    """Every transport target that holds the KEK: the nodes, then the backup store."""
    return [*duo.nodes, "backup"]


def kek_status(duo: Duo, client: NodeClient) -> dict[str, P.KekStatusReply]:
    return {target: client.call(target, P.KEK_STATUS) for target in holders(duo)}


def send_kek(client: NodeClient, sender: str, receiver: str, replace: bool = False) -> str:
    """The KEK from `sender`'s token into `receiver`'s, wrapped to a one-time RSA transport key the
    receiver makes (RSA-OAEP): never in clear. Returns the fingerprint the receiver now holds."""
    public = client.call(receiver, P.KEK_TRANSPORT_KEY).public
    blob = client.call(sender, P.KEK_WRAP_FOR, P.KekWrapForRequest(public=public)).blob
    return client.call(receiver, P.KEK_UNWRAP, P.KekUnwrapRequest(blob=blob, replace=replace)).fingerprint


def kek_init(duo: Duo, client: NodeClient, replace: bool = False) -> dict[str, Any]:
    with key_lock(duo, "kek init"):
        return _kek_init(duo, client, replace)


def _kek_init(duo: Duo, client: NodeClient, replace: bool) -> dict[str, Any]:
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
    first, *receivers = holders(duo)
    fingerprint = client.call(first, P.KEK_GENERATE, P.ReplaceRequest(replace=replace)).fingerprint
    for receiver in receivers:
        got = send_kek(client, first, receiver, replace)
        if got != fingerprint:
            raise KekError(f"{receiver}: KEK fingerprint {got} differs from {first}'s {fingerprint}")
    log.info("KEK %s on %s", fingerprint, ", ".join(holders(duo)))
    return {"fingerprint": fingerprint, "holders": holders(duo), "replaced": bool(have)}
