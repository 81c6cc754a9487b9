"""Long self-contained runs (the release CLI end to end) started when the session starts, one at a time in a
background thread, so they use the machine's second core while the in-process tests use the first.

The suite is CPU-bound on one core (torch runs one thread per process). An end-to-end release is a
subprocess that needs only its own temp folder, its own port and the session's environment as it was before
any test changed it. A test module declares such a run with `@early_run`; a test or fixture that names it
waits for what the function returned (or its exception, raised again there). Runs start in the order their
first user was collected; a run no collected test uses never starts (conftest's `_early_runs`).
"""

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import psutil
import pytest

_RUNS: dict[tuple[str, str], "_Run"] = {}


class _Run:
    def __init__(self, fn: Callable[[Path, dict], object]):
        self.fn = fn
        self.future: Future | None = None


def early_run(fn: Callable[[Path, dict], object]):
    """`fn(tmp, env)`: `tmp` its own empty folder, `env` the session's environment to start subprocesses with
    (tests/cli.py's `environ=`). Replaces `fn` with a module fixture of the same name that returns its result."""
    run = _RUNS[(fn.__module__, fn.__name__)] = _Run(fn)

    @pytest.fixture(name=fn.__name__, scope="module")
    def result(tmp_path_factory):
        if run.future is None:  # not started with the session (e.g. requested through getfixturevalue)
            return fn(tmp_path_factory.mktemp(fn.__name__), dict(os.environ))
        return run.future.result()

    return result


def start(items, tmp_path_factory) -> ThreadPoolExecutor:
    """Submit every early run that a collected item uses, in collection order, to one background thread."""
    env = dict(os.environ)  # before any test sets or removes a variable
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="early-run")
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", None)
        for name in getattr(item, "fixturenames", ()):
            run = _RUNS.get((module, name))
            if run is not None and run.future is None:
                run.future = pool.submit(run.fn, tmp_path_factory.mktemp(name), env)
    return pool


def stop(pool: ThreadPoolExecutor) -> None:
    """At the session's end: start no other run, and end a run still going (after -x or Ctrl-C) by terminating
    this process's children, which by now only the runs start, until its function returns."""
    pool.shutdown(wait=False, cancel_futures=True)
    running = [run.future for run in _RUNS.values() if run.future is not None and not run.future.done()]
    while not all(future.done() for future in running):
        for child in psutil.Process().children(recursive=True):
            try:
                child.terminate()
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.2)
