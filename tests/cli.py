"""Run the real CLI in a subprocess as a user would: its own HF home, and neither the test session's
endpoint nor its token (the run starts its own embedded endpoint)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on now (for a run's own local hub)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(tmp: Path, environ: dict | None = None) -> dict:
    """`environ` (default: os.environ) less the session's endpoint and tokens, with HF_HOME in `tmp`."""
    base = os.environ if environ is None else environ
    env = {k: v for k, v in base.items() if k not in ("HF_ENDPOINT", "HF_TOKEN", "DARWIN_LOCALHUB_TOKEN")}
    env["HF_HOME"] = str(tmp / "hf-home")
    return env


def run_cli(tmp: Path, *args: str, timeout: float = 400, environ: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m release ARGS --no-progress` from the checkout, output captured."""
    return subprocess.run([sys.executable, "-m", "release", *args, "--no-progress"], capture_output=True, text=True,
                          env=isolated_env(tmp, environ), cwd=ROOT, timeout=timeout)


def run_cli_to_file(tmp: Path, log: Path, *args: str, timeout: float = 400,
                    environ: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m release ARGS > LOG 2>&1`, as CI runs it (no progress flag: the output is not a terminal);
    the log's text is returned as both stdout and stderr."""
    with log.open("wb") as f:
        done = subprocess.run([sys.executable, "-m", "release", *args], stdout=f, stderr=subprocess.STDOUT,
                              env=isolated_env(tmp, environ), cwd=ROOT, timeout=timeout)
    text = log.read_text(encoding="utf-8", errors="replace")
    return subprocess.CompletedProcess(done.args, done.returncode, text, text)
