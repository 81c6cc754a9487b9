"""One run of a run folder at a time (issue 17 item 4): a second run is refused in one line naming the
holder, and a killed holder never leaves a stale lock behind."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from release.errors import ReleaseError
from release.run.lock import hold_run_lock

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """name: locked
father: {repo: a/father}
mother: {repo: a/mother}
child: {repo: a/child}
fitness: {kind: calibration}
hub: {endpoint: "http://127.0.0.1:9"}
runs_dir: %s
"""


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock of runs/locked/ until it is stopped."""
    run_dir = tmp_path / "runs" / "locked"
    run_dir.mkdir(parents=True)
    code = textwrap.dedent(f"""
        import sys, time
        from release.run.lock import hold_run_lock
        with hold_run_lock({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "other.yaml"], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    yield proc, run_dir
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_in_one_line_naming_the_holder(tmp_path, holder):
    proc, run_dir = holder
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG % (tmp_path / "runs"))
    out = subprocess.run([sys.executable, "-m", "release", "run", str(config), "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr
    assert f"in use by process {proc.pid} (darwin-release run other.yaml)" in lines[0]
    assert not (run_dir / "stages.json").exists()  # nothing read, nothing written


def test_a_killed_holder_leaves_no_stale_lock(holder):
    proc, run_dir = holder
    with pytest.raises(ReleaseError, match=f"process {proc.pid}"):
        with hold_run_lock(run_dir):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with hold_run_lock(run_dir):  # the kernel dropped the dead process's lock
        with pytest.raises(ReleaseError, match="in use by process"):  # and a second holder is refused again
            with hold_run_lock(run_dir):
                pass
    with hold_run_lock(run_dir):  # released when the block ends
        pass
