"""8. Tracking overhead: the time the trackio tracker adds to a search candidate, / the candidate's evaluation.

A real search (`run_search`, 2 generations of POPSIZE candidates) on the scale-out benchmark's live model
(`bench_scaleout.build_bench_search`: hidden 768, 16 synthetic items, one thread) with a `TrackioTracker`
attached, into a throw-away TRACKIO_DIR. The tracker's callbacks are timed where the search calls them
(one row per candidate, one per generation with its genome image; opening and closing the run, once per
search, are reported apart), the evaluations by the search's own log, in the same run. trackio writes its SQLite rows from a background thread; that thread's work is not
in the figure (on this 2-core machine it competes for a core only while it flushes a batch).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.common import row

TARGET = 0.01
POPSIZE, GENERATIONS = 6, 2


class _Timed:
    """Wraps a tracker: the seconds the search spends in its callbacks."""

    def __init__(self, tracker):
        self.tracker, self.seconds = tracker, {}

    def __getattr__(self, hook):
        fn = getattr(self.tracker, hook)

        def timed(*args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.seconds[hook] = self.seconds.get(hook, 0.0) + time.perf_counter() - t0
        return timed


def run() -> dict:
    threads, saved = torch.get_num_threads(), os.environ.get("TRACKIO_DIR")
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
            os.environ["TRACKIO_DIR"] = str(Path(tmp) / "trackio")  # before trackio is imported
            return _measure(Path(tmp))
    finally:
        torch.set_num_threads(threads)
        os.environ.pop("TRACKIO_DIR") if saved is None else os.environ.update(TRACKIO_DIR=saved)


def _measure(tmp: Path) -> dict:
    from bench.bench_scaleout import LAYERS, build_bench_search
    from release.config import SearchSpec
    from release.search.cmaes import LOG, run_search
    from release.search.tracking import TrackioTracker

    live = build_bench_search(tmp / "work")
    spec = SearchSpec(popsize=POPSIZE, sigma0=0.1, max_generations=GENERATIONS, seed=0)
    folder = tmp / "breed"
    tracker = _Timed(TrackioTracker("bench-tracking", "bench", folder, POPSIZE, live.space.names, [], 0.5))
    result = run_search(live.space, live.fitness, spec, folder, fingerprint="bench", progress=False,
                        callbacks=(tracker,))
    rows = [json.loads(line) for line in (folder / LOG).read_text().splitlines()]
    n = result.evaluations
    evaluation = sum(r["seconds"] for r in rows) / n
    # Per candidate in steady state: its row, and its share of its generation's row and genome image.
    # Opening the run (trackio.init, reading back what the store holds) and closing it happen once a search.
    per_candidate = (tracker.seconds["on_candidate"] + tracker.seconds["on_generation"]) / n
    once = tracker.seconds["on_start"] + tracker.seconds["on_end"]
    ratio = per_candidate / evaluation
    print(f"   {n} candidates ({GENERATIONS} generations) at hidden 768, {LAYERS} layers: evaluation "
          f"{evaluation:.2f} s, tracking {per_candidate * 1e3:.1f} ms per candidate (row "
          f"{tracker.seconds['on_candidate'] / n * 1e3:.1f} ms, generation row + genome image "
          f"{tracker.seconds['on_generation'] / GENERATIONS * 1e3:.0f} ms per generation); once per search {once:.2f} s")
    print(f"   tracking / evaluation = {ratio:.4f} (target <= {TARGET}); load average {os.getloadavg()[0]:.1f}")
    return {"tracking_overhead_ratio": row(ratio, "tracker time / evaluation time, per candidate", f"<= {TARGET}",
                                           tracking_ms_per_candidate=round(per_candidate * 1e3, 2),
                                           once_per_search_seconds=round(once, 3),
                                           evaluation_seconds_per_candidate=round(evaluation, 3), candidates=n)}


if __name__ == "__main__":
    run()
