"""What a run prints for people and CI (release/ui/output.py): warnings once, routine events not as
warnings, bars only in a terminal."""

import logging
import socket
import subprocess
import sys
import time

from release.localhub import serve
from tests.cli import ROOT


def test_a_library_warning_printed_by_its_own_handler_is_not_printed_again():
    # huggingface_hub prints its records with its own handler and passes them to the root one too.
    script = """
import logging, sys
from release.ui.output import configure_logging
configure_logging(verbose=False)
library = logging.getLogger("somelib")
library.addHandler(logging.StreamHandler(sys.stderr))
logging.getLogger("somelib.api").warning("no files have been modified")
logging.getLogger("release.x").warning("ours, once")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("no files have been modified") == 1
    assert out.stderr.count("ours, once") == 1


def test_an_idle_keep_alive_connection_closed_by_the_local_hub_is_not_a_warning(tmp_path, caplog):
    with serve(tmp_path / "hub") as hub:
        hub.idle_timeout = 0.2
        with caplog.at_level(logging.INFO, logger="release.localhub"):
            s = socket.create_connection(("127.0.0.1", hub.httpd.server_address[1]), timeout=10)
            assert s.recv(100) == b""  # the server closed the idle connection
            s.close()
            deadline = time.monotonic() + 5
            while not any("timed out" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                time.sleep(0.02)
    closed = [r for r in caplog.records if "timed out" in r.getMessage()]
    assert closed and all(r.levelno == logging.INFO for r in closed)


def test_progress_bars_follow_the_terminal_unless_asked(monkeypatch):
    from release.ui import output as console

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stdout", Stream(False))
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert console.bars_wanted(None) is False and console.bars_wanted(True) is True
    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert console.bars_wanted(None) is True and console.bars_wanted(False) is False
