"""One Ray actor per worker: builds the live search model once, then only scores genomes.

Plain Python (no Ray import): pool.py turns `FitnessWorker` into an actor. What a worker builds comes
from a picklable `build(workdir) -> LiveSearch`; for a release that is `BuildFromHub`, which pulls the
parents on the worker's own node, pinned to the commits the driver resolved, and calls the same
`build_live_search` as the in-process search.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import release
from release.config import ReleaseConfig


@dataclass(frozen=True)
class BuildFromHub:
    """Pull both parents at the driver's resolved commits (a cache hit where already pulled) and build."""

    config: ReleaseConfig
    pulled: dict
    r_mri: list[float] | None = None  # the MRI stage's per-layer ratios when genome.mri is on

    def __call__(self, workdir: Path):
        from release.search.fitness import build_live_search  # imports cma and matplotlib
        from release.hub.client import Hub  # huggingface_hub reads HF_ENDPOINT when first imported

        hub = Hub()
        local = {}
        for role in ("father", "mother"):
            ref = self.pulled[role]
            local[role] = {**ref, "path": str(hub.pull(ref["repo"], ref["revision"]).path)}
        # Each worker writes its task files under its own folder: workers on one node must not race.
        return build_live_search(self.config.model_copy(update={"runs_dir": workdir}), local, self.r_mri)


class FitnessWorker:
    """Holds one live search model; `evaluate(genome)` sets its ratios and scores it.

    Nothing of a candidate survives into the next: the fitness sets every ratio and scores from the
    weights alone, so a worker's history cannot change a score (tests/test_distributed.py checks it).
    A failure to build is kept and raised by every call, so it reaches the driver as itself instead of
    as an actor that restarts forever.
    """

    def __init__(self, build):
        self._workdir = tempfile.TemporaryDirectory(prefix="darwin-worker-")
        self.error: Exception | None = None
        try:
            self.live = build(Path(self._workdir.name))
        except Exception as e:
            self.error = e

    def describe(self) -> dict:
        if self.error:
            raise self.error
        return {"live": dataclasses.replace(self.live, fitness=None), "host": socket.gethostname(),
                "pid": os.getpid(), "version": release.__version__, "code": str(Path(release.__file__).resolve().parent)}

    def evaluate(self, genome: list[float]) -> tuple[float, dict[str, float], float]:
        if self.error:
            raise self.error
        t0 = time.perf_counter()
        value, scores = self.live.fitness(genome)
        return value, scores, time.perf_counter() - t0
