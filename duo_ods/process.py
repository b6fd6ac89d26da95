"""Every external program ods-duo starts: `run` to completion, or `spawn` long-running ones.

`run`: argument lists only (never a shell string); a failure raises CommandError with
the command, exit code, stdout and stderr. Secrets go in through `input` or a
file, never through argv.

Long-running processes we start: spawn detached, remember by pid, stop by pid.
A record keeps the pid with the kernel's start time of that process, so a
recycled pid is never taken for ours. Stopping is SIGTERM, then SIGKILL after
a timeout; nothing is ever found or killed by name.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from duo_ods.errors import CommandError

log = logging.getLogger(__name__)

# Children started by this very process, kept so they are reaped (not left as zombies or
# warned about by Popen) when this process stops them. Usually the starter exits first.
_children: dict[int, subprocess.Popen[bytes]] = {}


def python_module(module: str) -> list[str]:
    """argv that runs `python -m MODULE` with this interpreter, whatever the working directory.

    -P (Python 3.11+): without it `-m` puts the current folder first on sys.path, so a folder that
    holds a `duo_ods/` directory (a checkout, an operator's scratch copy) would be imported instead
    of the installed package. PYTHONPATH still counts (the benchmarks run a frozen copy through it).
    """
    return [sys.executable, "-P", "-m", module]


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv to completion and return its result; raise CommandError when it fails."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log.debug("run %s", argv)
    try:
        result = subprocess.run(
            list(argv),
            env=full_env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise CommandError(argv, 127, "", f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        raise CommandError(argv, -1, out, f"timed out after {timeout:.0f} s {err}") from exc
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout, result.stderr)
    return result


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int  # /proc/PID/stat field 22


def proc_start_time(pid: int) -> int | None:
    """The process's start time, or None when it is gone (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def read_record(path: Path) -> ProcessRecord | None:
    return ProcessRecord(**json.loads(path.read_text())) if path.exists() else None


def is_alive(record: ProcessRecord) -> bool:
    return proc_start_time(record.pid) == record.start_time


def running(path: Path) -> ProcessRecord | None:
    record = read_record(path)
    return record if record is not None and is_alive(record) else None


def spawn(name: str, argv: Sequence[str], logfile: Path, record_path: Path, *,
          env: Mapping[str, str] | None = None, cwd: Path | None = None) -> ProcessRecord:  # fmt: skip
    """Start argv detached (it outlives the command that started it), output to logfile."""
    full_env = dict(os.environ, **(env or {}))
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            close_fds=True,
            cwd=cwd,
        )
    _children[proc.pid] = proc
    start = proc_start_time(proc.pid)
    if start is None:
        raise OSError(f"{name} exited at once; see {logfile}")
    record = ProcessRecord(name, proc.pid, start)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(asdict(record)))
    log.info("started %s pid %d", name, proc.pid)
    return record


def stop(record_path: Path, timeout: float = 20.0) -> str:
    """Stop the recorded process: 'stopped', 'killed' (ignored SIGTERM) or 'not running'."""
    record = read_record(record_path)
    if record is None or not is_alive(record):
        record_path.unlink(missing_ok=True)
        return "not running"
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.1)
    outcome = "stopped"
    if is_alive(record):
        os.kill(record.pid, signal.SIGKILL)
        while is_alive(record):
            time.sleep(0.05)
        outcome = "killed"
    if (child := _children.pop(record.pid, None)) is not None:
        child.wait()
    record_path.unlink(missing_ok=True)
    log.info("%s pid %d %s", record.name, record.pid, outcome)
    return outcome


def exit_status(pid: int) -> int | None:
    """The exit status of a process this process spawned, once it has ended (reaping it); None if
    it runs, or another process started it (its exit status went to its own parent)."""
    child = _children.get(pid)
    if child is None or child.poll() is None:
        return None
    del _children[pid]
    return child.returncode


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
