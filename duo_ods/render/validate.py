"""Generated config is checked by its owner's checker before anything uses it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from duo_ods.errors import CommandError, RenderError
from duo_ods.proc import run

ODS_SCHEMA_DIR = Path("/usr/share/opendnssec")


def check_ods_xml(text: str, schema: str, what: str) -> None:
    """Validate XML text against one of ODS's .rng schemas (conf, kasp, zonelist, addns, signconf).

    The text is written to a private temporary file because xmllint reads files;
    conf.xml carries the PIN, so the file is 0600 and removed at once.
    """
    rng = ODS_SCHEMA_DIR / f"{schema}.rng"
    with tempfile.NamedTemporaryFile("w", suffix=".xml", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        try:
            run(["xmllint", "--noout", "--relaxng", str(rng), handle.name], timeout=30)
        except CommandError as exc:
            first = next((ln for ln in exc.stderr.splitlines() if "fails to validate" not in ln), exc.stderr)
            first = first.replace(handle.name, what)
            raise RenderError(f"{what} does not validate against {rng}: {first.strip()}") from exc
