from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.dns.tsig import ensure_tsig_key

BASE = """
[nodes.a]
address = "127.0.0.11"
port = 5301
base_dir = "nodes/a"
token_label = "DUO-A"
[nodes.b]
address = "127.0.0.12"
port = 5302
base_dir = "nodes/b"
token_label = "DUO-B"
[backup]
dir = "backup"
"""


@pytest.fixture
def make_duo(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(extra: str = "") -> Duo:
        path = tmp_path / "duo.toml"
        path.write_text(BASE + extra)
        duo = load_config(path)
        ensure_tsig_key(duo.tsig_key_path, "duo-transfer", "hmac-sha256")
        for node in duo.nodes.values():
            node.pin_file.parent.mkdir(parents=True, exist_ok=True)
            node.pin_file.write_text("1234\n")
            node.pin_file.chmod(0o600)
        return duo

    return make
