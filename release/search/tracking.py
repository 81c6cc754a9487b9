"""Live experiment tracking of the search with trackio (`search.track`): watch a long search from anywhere.

A `SearchCallback` for `release.search.cmaes.run_search`. Project = the release's name, run = the search's
fingerprint, so a resumed search continues the same run. Every candidate is one row (fitness, per-task
scores, seconds, worker, MRI tau when searched, the genome by gene) and every generation one row (best,
mean, sigma, best so far, tau of the best, and the best genome so far as a bar chart image).

Exactly once, even across a kill: trackio writes from a background thread, so rows of the last moments
before a SIGKILL may never reach its store, while others of an interrupted generation did. On start the
tracker reads which rows trackio holds for the run, logs the checkpointed candidates and generations it
lacks (from the search's own log), and from then on skips any candidate it already holds.

Tracking never stops the search: the first failure logs one warning and the tracker goes quiet.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from pathlib import Path

from release.errors import ReleaseError
from release.search.cmaes import LOG, SearchCallback, SearchResult, SearchState
from release.search.tracking_space import push_dashboard

log = logging.getLogger(__name__)

CANDIDATE, GENERATION = "candidate/", "generation/"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TrackioTracker(SearchCallback):
    def __init__(self, project: str, run: str, folder: Path, popsize: int, genes: list[str], frozen: list[int],
                 r_max: float, config: dict | None = None, space: str | None = None, private: bool = False):
        self.project, self.run_name, self.folder, self.popsize = project, run, Path(folder), popsize
        self.genes, self.frozen, self.r_max, self.config = genes, frozen, r_max, config or {}
        self.space, self.private = space, private  # search.track_space: push the dashboard there
        self.run = None
        self._drawn: tuple[list[float], Path] | None = None  # (best genome, its image)
        self.broken = False
        self.space_broken = False
        self.candidates: set[tuple[int, int]] = set()  # (generation, candidate) already in trackio's store
        self.generations: set[int] = set()

    # --- SearchCallback ---------------------------------------------------------------------------------

    def on_start(self, state: SearchState, resumed: bool) -> None:
        def start():
            import trackio

            self.candidates, self.generations = logged_rows(self.project, self.run_name)
            self.run = _quietly(lambda: trackio.init(project=self.project, name=self.run_name, resume="allow",
                                                     config=self.config, embed=False, auto_log_cpu=False,
                                                     auto_log_gpu=False))
            # Backfill what the checkpoint counts but trackio lost (or never saw): log lines of done generations.
            best = None
            done = [line for line in _read_log(self.folder / LOG) if line["generation"] < state.generation]
            for line in done:
                self._candidate(line)
            for record in state.history:  # with the best so far as the search saw it then (first of the best)
                for line in done:
                    if line["generation"] == record["generation"] and (best is None or line["fitness"] > best["fitness"]):
                        best = line
                self._generation(record, best and best["genome"], best and best.get("tau"))
        self._safely(start)

    def on_candidate(self, line: dict) -> None:
        self._safely(lambda: self._candidate(line))

    def on_generation(self, record: dict, state: SearchState) -> None:
        self._safely(lambda: self._generation(record, state.best_genome, state.best_tau))
        self._push_space()

    def on_end(self, result: SearchResult) -> None:
        self._safely(lambda: self.run and _quietly(_finish))
        self._push_space()

    def _push_space(self) -> None:
        """Rows still in trackio's writer queue go with the next push; the last one follows finish()."""
        if not self.space or self.broken or self.space_broken:
            return
        try:
            push_dashboard(self.project, self.space, private=self.private)
        except Exception as e:  # the Hub being away must not stop the search, nor the local tracking
            self.space_broken = True
            log.warning("pushing the dashboard to Space %s failed (%s: %s); tracking goes on locally", self.space,
                        type(e).__name__, e)

    # --- rows -------------------------------------------------------------------------------------------

    def _candidate(self, line: dict) -> None:
        key = (line["generation"], line["candidate"])
        if key in self.candidates:
            return
        metrics = {f"{CANDIDATE}fitness": line["fitness"], f"{CANDIDATE}seconds": line["seconds"],
                   f"{CANDIDATE}generation": line["generation"], f"{CANDIDATE}index": line["candidate"],
                   **{f"{CANDIDATE}score/{task}": v for task, v in line["scores"].items()},
                   **{f"genome/{gene}": r for gene, r in zip(self.genes, line["genome"])}}
        if line.get("worker") is not None:
            metrics[f"{CANDIDATE}worker"] = line["worker"]
        if line.get("tau") is not None:
            metrics[f"{CANDIDATE}tau"] = line["tau"]
        self.run.log(metrics, step=line["generation"] * self.popsize + line["candidate"])
        self.candidates.add(key)

    def _generation(self, record: dict, best_genome: list[float] | None, best_tau: float | None) -> None:
        g = record["generation"]
        if g in self.generations:
            return
        metrics = {f"{GENERATION}{k}": record[k] for k in ("best", "mean", "best_so_far", "sigma") if k in record}
        metrics[f"{GENERATION}index"] = g
        if best_tau is not None:
            metrics[f"{GENERATION}best_tau"] = best_tau
        if best_genome:
            metrics["best_genome"] = self._genome_image(best_genome, g)
        self.run.log(metrics, step=(g + 1) * self.popsize - 1)
        self.generations.add(g)

    def _genome_image(self, genome: list[float], generation: int):
        import trackio

        from release.card.plots import draw_genome_bars  # imports matplotlib

        # Drawn again only when the best genome changed. Kept beside the search log: trackio reads the file
        # after log() returns, from its own thread.
        if self._drawn is None or self._drawn[0] != genome:
            path = draw_genome_bars(genome, self.frozen, self.r_max,
                                    self.folder / "track" / f"best-genome-{generation}.png")
            self._drawn = (list(genome), path)
        return trackio.Image(str(self._drawn[1]), caption=f"best genome after generation {generation + 1}")

    def _safely(self, action) -> None:
        if self.broken:
            return
        try:
            action()
        except ImportError:
            self.broken = True
            log.warning("search.track is on but trackio is not installed (pip install darwin-release[track]); "
                        "the search goes on without tracking")
        except Exception as e:  # a tracker must never stop the search
            self.broken = True
            log.warning("trackio tracking stopped (%s: %s); the search goes on without it", type(e).__name__, e)


def logged_rows(project: str, run: str) -> tuple[set[tuple[int, int]], set[int]]:
    """(generation, candidate) pairs and generations that trackio's own store holds for `run`."""
    from trackio.sqlite_storage import SQLiteStorage

    candidates, generations = set(), set()
    for row in SQLiteStorage.get_logs(project, run):
        if f"{CANDIDATE}index" in row:
            candidates.add((int(row[f"{CANDIDATE}generation"]), int(row[f"{CANDIDATE}index"])))
        if f"{GENERATION}index" in row:
            generations.add(int(row[f"{GENERATION}index"]))
    return candidates, generations


def _finish() -> None:
    import trackio

    trackio.finish()  # the module's, not the run's: it also forgets the run, so exit does not finish it again


def _quietly(call):
    """trackio prints banners (in ANSI colours) to stdout: into the log instead, as one plain line."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        result = call()
    if printed.getvalue().strip():
        log.info("trackio: %s", " ".join(_ANSI.sub("", printed.getvalue()).split()))
    return result


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trackio_dir() -> Path:
    """Where trackio keeps its projects (TRACKIO_DIR, else HF_HOME/trackio), as trackio itself decides."""
    from trackio.utils import TRACKIO_DIR

    return Path(os.environ.get("TRACKIO_DIR") or TRACKIO_DIR)


def open_dashboard(project: str, port: int | None = None, open_browser: bool = True, block: bool = True):
    """trackio's dashboard for `project` on 127.0.0.1; returns (server, url). Blocks until Ctrl-C if `block`."""
    try:
        import trackio
    except ImportError:
        raise ReleaseError("the dashboard needs trackio, which is not installed: pip install darwin-release[track]") from None
    server, url, _share, _full = trackio.show(project=project, host="127.0.0.1", server_port=port,
                                              open_browser=open_browser, block_thread=block)
    return server, url
