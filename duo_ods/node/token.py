"""A node's SoftHSM2 token: its own token directory and a token initialised by label.

softhsm2-util prompts for the PINs when they are not on its command line; we
answer the prompts with pexpect so the PINs never appear in argv.
"""

from __future__ import annotations

import os

import pexpect

from duo_ods.config.resolve import Node
from duo_ods.errors import NodeError
from duo_ods.proc import run
from duo_ods.render.engine import render, write_atomic


def softhsm_env(node: Node) -> dict[str, str]:
    return {"SOFTHSM2_CONF": str(node.paths.softhsm_conf)}


def write_softhsm_conf(node: Node) -> None:
    node.paths.tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = render("softhsm2.conf.j2", {"node": node.name, "tokendir": str(node.paths.tokens)})
    write_atomic(node.paths.softhsm_conf, text, mode=0o644)


def token_exists(node: Node) -> bool:
    out = run(["softhsm2-util", "--show-slots"], env=softhsm_env(node), timeout=30).stdout
    return any(line.strip() == f"Label:            {node.config.token_label}" for line in out.splitlines())


def init_token(node: Node, pin: str, so_pin: str) -> bool:
    """Initialise the node's token unless it exists; True when it was made now."""
    if token_exists(node):
        return False
    env = dict(os.environ, **softhsm_env(node))
    child = pexpect.spawn(
        "softhsm2-util",
        ["--init-token", "--free", "--label", node.config.token_label],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    try:
        for prompt, secret in (
            ("enter SO PIN", so_pin),
            ("reenter SO PIN", so_pin),
            ("enter user PIN", pin),
            ("reenter user PIN", pin),
        ):
            child.expect(prompt)
            child.setecho(False)
            child.sendline(secret)
        child.expect(pexpect.EOF)
    except (pexpect.TIMEOUT, pexpect.EOF) as exc:
        raise NodeError(
            f"node {node.name}: softhsm2-util did not initialise token {node.config.token_label}"
        ) from exc
    finally:
        child.close()
    if child.exitstatus != 0 or not token_exists(node):
        raise NodeError(f"node {node.name}: token {node.config.token_label} was not created")
    return True
