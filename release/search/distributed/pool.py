"""The driver's side of the scale-out: a pool of worker actors that scores one generation at a time.

Candidates are handed out one at a time: a free worker takes the next, so a slow worker holds no one
up beyond the generation's last candidate. A worker whose process dies is restarted by Ray (the actor
rebuilds its model) and its candidate is scored again; scores do not depend on the worker, so the
search's result is unchanged.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from contextlib import contextmanager
from math import ceil
from pathlib import Path

import release
from release.config import ReleaseConfig
from release.search.distributed.cluster import connect, import_ray
from release.search.distributed.worker import BuildFromHub, FitnessWorker
from release.errors import ReleaseError
from release.search.fitness import LiveSearch
from release.search.cmaes import OnResult

log = logging.getLogger(__name__)

MAX_RESTARTS = 3  # per worker; a candidate is tried at most this many times more
# Passed to workers so that, on any node, they reach the same Hub and import this code.
WORKER_ENV = ("HF_ENDPOINT", "HF_HUB_DISABLE_XET", "HF_HUB_DISABLE_TELEMETRY", "TOKENIZERS_PARALLELISM")


class RayPool:
    """`workers` actors, each built by `build(workdir)`; an `Evaluation` for `release.search.cmaes.run_search`."""

    def __init__(self, build, workers: int, resources: dict[str, float] | None = None,
                 max_restarts: int = MAX_RESTARTS):
        self.ray = ray = import_ray()
        resources = dict(resources or {"CPU": 1})
        _check_capacity(ray, workers, resources)
        actor = ray.remote(FitnessWorker).options(max_restarts=max_restarts, max_task_retries=0,
                                                  runtime_env={"env_vars": _worker_env()}, **_ray_options(resources))
        self.actors = [actor.remote(build) for _ in range(workers)]
        self.workers, self.busy, self.max_restarts = workers, 0, max_restarts
        self.reruns = 0  # candidates scored again because their worker died
        self._idle = deque(range(workers))  # workers free to take a candidate
        self._waking: dict = {}  # ping future -> worker being restarted by Ray
        try:
            facts = [self._get(a.describe.remote()) for a in self.actors]
        except BaseException:
            self.close()
            raise
        self.live = _agree(facts)

    def evaluate(self, genomes: list[list[float]], on_result: OnResult) -> None:
        ray = self.ray
        todo = deque(range(len(genomes)))
        scoring: dict = {}  # future -> (candidate, worker)
        tries = [0] * len(genomes)
        try:
            while todo or scoring:
                while todo and self._idle:
                    k, w = todo.popleft(), self._idle.popleft()
                    scoring[self.actors[w].evaluate.remote(genomes[k])] = (k, w)
                self.busy = len(scoring)
                if not scoring and not self._waking:
                    raise ReleaseError("every Ray worker died and none could be restarted; check the workers' "
                                       "memory and logs")
                (done,), _ = ray.wait([*scoring, *self._waking], num_returns=1)
                if done in self._waking:
                    self._woken(done)
                    continue
                k, w = scoring.pop(done)
                try:
                    value, scores, seconds = self._get(done)
                except ray.exceptions.RayActorError as e:
                    tries[k] += 1
                    if tries[k] > self.max_restarts:
                        raise ReleaseError(f"candidate {k} was cut short {tries[k]} times by dying workers (the "
                                           f"last: {type(e).__name__}); check the workers' memory and logs") from None
                    log.warning("worker %d died while scoring candidate %d (%s): scoring it again", w, k,
                                type(e).__name__)
                    self.reruns += 1
                    todo.appendleft(k)
                    self._ping(w)  # Ray restarts it (it rebuilds its model); the others go on meanwhile
                    continue
                self._idle.append(w)
                self.busy = len(scoring)
                on_result(k, value, scores, seconds, w)
        finally:
            for future in scoring:  # interrupted: do not leave workers scoring stale candidates
                ray.cancel(future, force=False)
            self.busy = 0

    def wait_ready(self) -> None:
        """Wait until no worker is restarting (those dead for good are left out)."""
        while self._waking:
            (done,), _ = self.ray.wait(list(self._waking), num_returns=1)
            self._woken(done)

    def _ping(self, w: int) -> None:
        self._waking[self.actors[w].describe.remote()] = w

    def _woken(self, ping) -> None:
        w = self._waking.pop(ping)
        state = self._state(ping)
        if state == "alive":
            self._idle.append(w)
            log.info("worker %d is back", w)
        elif state == "restarting":
            time.sleep(0.1)
            self._ping(w)
        else:
            log.warning("worker %d is dead for good (restarts used up); the others go on", w)

    def _state(self, ping) -> str:
        """What a worker's answer to a ping says: alive, restarting, or dead (restarts used up)."""
        try:
            self._get(ping)
        except self.ray.exceptions.ActorUnavailableError:
            return "restarting"
        except self.ray.exceptions.RayActorError:
            return "dead"
        return "alive"

    def worker_pids(self) -> list[int]:
        self.wait_ready()
        return [f["pid"] for f in self._get([a.describe.remote() for a in self.actors])]

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)

    def _get(self, future):
        try:
            return self.ray.get(future)
        except self.ray.exceptions.RayTaskError as e:  # an error in the worker's code: raise it as itself
            if isinstance(e.cause, ReleaseError):
                raise ReleaseError(str(e.cause)) from None
            raise e.as_instanceof_cause() from None


@contextmanager
def ray_workers(config: ReleaseConfig, pulled: dict, r_mri: list[float] | None = None):
    """A RayPool for a release: Ray started or joined as the config says, stopped again if started here."""
    s = config.search
    resources = dict(s.worker_resources or {"CPU": 1})
    started = connect(s.ray_address, num_cpus=max(1, ceil(s.workers * resources.get("CPU", 1))),
                      timeout_s=s.ray_connect_timeout_s)
    try:
        pool = RayPool(BuildFromHub(_absolute(config), pulled, r_mri), s.workers, resources)
        try:
            log.info("%d Ray workers ready (%s, %s)", s.workers, pool.live.device, pool.live.dtype)
            yield pool
        finally:
            pool.close()
    finally:
        if started:
            import_ray().shutdown()


def _absolute(config: ReleaseConfig) -> ReleaseConfig:
    """Paths in the config as the driver sees them: workers do not share its working directory."""
    f = config.fitness
    fitness = f.model_copy(update={"data_dir": f.data_dir and f.data_dir.resolve(),
                                   "calibration_text": f.calibration_text and f.calibration_text.resolve()})
    return config.model_copy(update={"fitness": fitness, "runs_dir": config.runs_dir.resolve()})


def _worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    code_root = str(Path(release.__file__).resolve().parents[1])  # this checkout first, as in the driver
    env["PYTHONPATH"] = os.pathsep.join([code_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _ray_options(resources: dict[str, float]) -> dict:
    other = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": resources.get("CPU", 1), "num_gpus": resources.get("GPU", 0), "resources": other or None}


def _check_capacity(ray, workers: int, resources: dict[str, float]) -> None:
    """Ray would wait forever for resources that are not there: say so at once."""
    total = ray.cluster_resources()
    for name, need in resources.items():
        if total.get(name, 0) < need * workers:
            raise ReleaseError(f"search.workers={workers} with worker_resources {resources} needs {need * workers:g} "
                               f"{name}, but the Ray cluster has {total.get(name, 0):g}: lower search.workers or "
                               "add nodes")


def _agree(facts: list[dict]) -> LiveSearch:
    """Every worker must have built the same model from the same code."""
    here = socket.gethostname()
    mine = str(Path(release.__file__).resolve().parent)
    first = facts[0]["live"]
    for f in facts:
        if f["version"] != release.__version__ or (f["host"] == here and f["code"] != mine):
            raise ReleaseError(f"a Ray worker on {f['host']} runs darwin-release {f['version']} from {f['code']}, "
                               f"the driver {release.__version__} from {mine}: install the same version on every node")
        live = f["live"]
        if (live.method, live.record, live.space.names, live.device, live.dtype) != (
                first.method, first.record, first.space.names, first.device, first.dtype):
            raise ReleaseError(f"Ray workers built different models ({live.device} {live.dtype} vs {first.device} "
                               f"{first.dtype}): give every worker the same hardware (search.worker_resources)")
    return first
