"""Generated config is checked by its owner's checker before anything uses it."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from duo_ods.errors import CommandError, RenderError
from duo_ods.process import run

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


def check_kasp(conf_text: str, kasp_text: str, what: str) -> None:
    """ods-kaspcheck: the policy's own rules beyond the schema (e.g. no more than 99 re-signs a
    day with datecounter serials), which the enforcer otherwise refuses only at `policy import`.

    Both files go to a private temporary folder (conf.xml carries the PIN), with an empty
    zonelist so the check reads nothing of the node's.
    """
    with tempfile.TemporaryDirectory(prefix="ods-duo-kaspcheck-") as tmp:
        folder = Path(tmp)
        conf, kasp, zonelist = folder / "conf.xml", folder / "kasp.xml", folder / "zonelist.xml"
        for path, text in ((conf, conf_text), (kasp, kasp_text), (zonelist, EMPTY_ZONELIST)):
            path.write_text(text, encoding="utf-8")
            path.chmod(0o600)
        proc = run(
            ["ods-kaspcheck", "-c", str(conf), "-k", str(kasp), "-z", str(zonelist)], timeout=30, check=False
        )
        # Every error but a missing file or folder ("NAME (PATH) does not exist", kc_helper.c): a
        # node not yet initialised lacks its kasp.db and working folders. Policy errors do not all
        # name the kasp file, so nothing else is left out.
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if ln.startswith("ERROR") and not MISSING_PATH.match(ln)]
        if errors:
            raise RenderError(f"{what}: ods-kaspcheck: {errors[0].replace(str(kasp), what)}")


MISSING_PATH = re.compile(r"^ERROR: .+ \(.+\) does not exist$")
EMPTY_ZONELIST = '<?xml version="1.0" encoding="UTF-8"?>\n<ZoneList/>\n'
