"""Scale-out on a local Ray instance: same search as in-process, dead workers replaced, clear errors.

One Ray instance of 2 CPUs serves the whole module; workers score the tiny parents' calibration fitness
(continuous values, so "the same fitness" is a strong claim).
"""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from release.config import ReleaseConfig  # noqa: E402
from release.search.distributed import RayPool  # noqa: E402
from release.search.distributed.cluster import connect  # noqa: E402
from release.search.distributed.worker import BuildFromHub  # noqa: E402
from release.errors import ReleaseError  # noqa: E402
from release.pipeline import RunOptions, run_release  # noqa: E402
from release.search.cmaes import LOG, SearchCallback, run_search  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NS = f"scale-{uuid.uuid4().hex[:6]}"


def _raw(local_hub, runs: Path, **search) -> dict:
    return {
        "name": "scale-test", "tiny_parents": True,
        "father": {"repo": f"{NS}/father"}, "mother": {"repo": f"{NS}/mother"}, "child": {"repo": f"{NS}/child"},
        "genome": {"frozen": [2], "r_max": 0.6, "init_mean": 0.3},
        "search": {"popsize": 4, "sigma0": 0.2, "max_generations": 2, "seed": 5, "device": "cpu", **search},
        "fitness": {"kind": "calibration"},
        "hub": {"endpoint": local_hub.url}, "runs_dir": str(runs),
    }


def _breed(raw: dict) -> tuple[dict, list[dict]]:
    config = ReleaseConfig.model_validate(raw)
    run_release(config, RunOptions(only=("breed",), progress=False))
    return _read(config.run_dir / "breed")


def _read(folder: Path) -> tuple[dict, list[dict]]:
    rows = [json.loads(line) for line in (folder / LOG).read_text().splitlines()]
    best = json.loads((folder / "best.json").read_text())
    return best, rows


def _same_search(rows) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "worker")} for r in rows]


@pytest.fixture(scope="module")
def ray_session():
    # The workers must import this checkout even without PYTHONPATH in the environment Ray inherits.
    saved = os.environ.pop("PYTHONPATH", None)
    try:
        assert connect(None, num_cpus=2)
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process(local_hub, tmp_path_factory):
    """The reference: today's in-process search (workers: 1). Publishes the tiny parents once."""
    os.environ["HF_TOKEN"] = local_hub.tokens[0]
    try:
        raw = _raw(local_hub, tmp_path_factory.mktemp("inproc"))
        best, rows = _breed(raw)
    finally:
        os.environ.pop("HF_TOKEN", None)
    config = ReleaseConfig.model_validate(raw)
    pulled = json.loads((config.run_dir / "stages.json").read_text())["pull"]["result"]
    return {"best": best, "rows": rows, "raw": raw, "pulled": pulled}


def test_a_ray_worker_from_the_config_gives_the_in_process_search(ray_session, in_process, local_hub, tmp_path):
    """`workers: 1` on a Ray instance (`ray_address: auto` joins this module's), through the pipeline."""
    assert all(r["worker"] is None for r in in_process["rows"])
    best, rows = _breed(_raw(local_hub, tmp_path, workers=1, ray_address="auto"))
    assert _same_search(rows) == _same_search(in_process["rows"])
    assert best["genome"] == in_process["best"]["genome"] and best["fitness"] == in_process["best"]["fitness"]
    assert {r["worker"] for r in rows} == {0} and all(r["seconds"] > 0 for r in rows)


@pytest.fixture(scope="module")
def pool(ray_session, in_process):
    config = ReleaseConfig.model_validate(in_process["raw"])
    pool = RayPool(BuildFromHub(config, in_process["pulled"]), workers=2)
    yield pool
    pool.close()


def test_two_workers_give_the_in_process_search(pool, in_process, tmp_path):
    config = ReleaseConfig.model_validate(in_process["raw"])
    result = run_search(pool.live.space, pool, config.search, tmp_path,
                        fingerprint="f", progress=False)
    best, rows = _read(tmp_path)
    assert _same_search(rows) == _same_search(in_process["rows"])
    assert result.genome == in_process["best"]["genome"] and result.fitness == in_process["best"]["fitness"]
    assert {r["worker"] for r in rows} == {0, 1}  # both took candidates


def test_workers_import_this_checkout_and_keep_no_state_between_candidates(pool):
    import release

    facts = [ray.get(a.describe.remote()) for a in pool.actors]
    assert {f["code"] for f in facts} == {str(Path(release.__file__).resolve().parent)}
    a, b = [0.1, 0.5, 0.0, 0.3, 0.2, 0.6], [0.6, 0.0, 0.0, 0.1, 0.4, 0.05]
    w0, w1 = pool.actors
    first_a, then_b, again_a = ray.get([w0.evaluate.remote(g) for g in (a, b, a)])
    fresh_b = ray.get(w1.evaluate.remote(b))
    assert first_a[:2] == again_a[:2]  # (fitness, scores): nothing of b stayed behind
    assert then_b[:2] == fresh_b[:2]  # b after a on one worker = b as the other worker's first genome
    assert first_a[0] != then_b[0]


class _KillWorker(SearchCallback):
    """SIGKILL worker 0's process after the third scored candidate, while it is scoring another."""

    def __init__(self, pid: int):
        self.pid, self.seen, self.killed = pid, 0, False

    def on_candidate(self, line):
        self.seen += 1
        if self.seen == 3 and not self.killed:
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True


def test_a_killed_worker_is_replaced_and_the_search_result_is_unchanged(pool, in_process, tmp_path):
    config = ReleaseConfig.model_validate(in_process["raw"])
    killer = _KillWorker(pool.worker_pids()[0])
    result = run_search(pool.live.space, pool, config.search, tmp_path,
                        fingerprint="f", progress=False, callbacks=(killer,))
    assert killer.killed and pool.reruns >= 1
    best, rows = _read(tmp_path)
    assert _same_search(rows) == _same_search(in_process["rows"])
    assert result.genome == in_process["best"]["genome"]
    pool.killed_pid = killer.pid


def test_missing_ray_is_a_one_line_error_naming_the_extra(monkeypatch, in_process, tmp_path, local_hub):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when not installed
    config = ReleaseConfig.model_validate(_raw(local_hub, tmp_path, workers=2))
    with pytest.raises(ReleaseError, match=r"pip install darwin-release\[ray\]") as e:
        run_release(config, RunOptions(only=("breed",), progress=False))
    assert "\n" not in str(e.value)


def test_unreachable_cluster_is_a_one_line_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("from release.search.distributed.cluster import connect\nfrom release.errors import ReleaseError\n"
            f"for address in ['127.0.0.1:{port}', 'ray://127.0.0.1:{port}']:\n"
            "    try:\n        connect(address, 1)\n    except ReleaseError as e:\n        print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    assert all("cannot reach the Ray cluster" in line and "ray start --head" in line for line in lines)


def test_the_killed_worker_came_back_with_a_new_process(pool):
    """Last in the module: by now Ray has usually finished restarting it (it rebuilds its model)."""
    killed = getattr(pool, "killed_pid", None)
    if killed is None:
        pytest.skip("runs after test_a_killed_worker_is_replaced_and_the_search_result_is_unchanged")
    pids = pool.worker_pids()
    assert killed not in pids and len(set(pids)) == 2
    a = [0.1, 0.5, 0.0, 0.3, 0.2, 0.6]
    assert len({tuple(x[:1]) for x in ray.get([w.evaluate.remote(a) for w in pool.actors])}) == 1
