"""CMA-ES over the genome: finds a known optimum, respects frozen layers, resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from release.config import GenomeSpec, SearchSpec
from release.errors import ReleaseError
from release.breeders.ffn_genome import GenomeSpace
from release.search.checkpoint import read_checkpoint, save_checkpoint
from release.search.cmaes import CHECKPOINT, LOG, run_search

N_LAYERS = 12
FROZEN = [3, 7, 8]
TARGET = np.array([0.05 * (i % 5) + 0.05 for i in range(N_LAYERS)])
TARGET[FROZEN] = 0.0


def quadratic(genome):
    """Synthetic fitness with a known optimum at TARGET (maximum 0)."""
    g = np.array(genome)
    return -float(np.sum((g - TARGET) ** 2)), {"quad": -float(np.sum((g - TARGET) ** 2))}


def _space():
    return GenomeSpace(N_LAYERS, GenomeSpec(frozen=FROZEN, r_max=0.5, init_mean=0.2))


def _strip_seconds(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def test_search_finds_the_known_optimum_within_budget(tmp_path):
    spec = SearchSpec(popsize=10, sigma0=0.1, max_generations=None, max_evaluations=1200, seed=1)
    result = run_search(_space(), quadratic, spec, tmp_path, fingerprint="f", progress=False)
    err = np.abs(np.array(result.genome) - TARGET).max()
    assert err < 0.01, (err, result.genome)  # stated tolerance: 0.01 per layer in <= 1200 evaluations
    assert result.evaluations <= 1200
    assert [result.genome[i] for i in FROZEN] == [0.0] * len(FROZEN)


def test_the_result_carries_the_final_distribution_mean_inside_the_bounds(tmp_path):
    spec = SearchSpec(popsize=10, sigma0=0.1, max_generations=None, max_evaluations=1200, seed=1)
    rng = np.random.default_rng(0)

    def noisy(genome):  # noise twice the spread of the candidates' true values: the best one is mostly luck
        value, scores = quadratic(genome)
        return value + rng.normal(0, 0.02), scores

    result = run_search(_space(), noisy, spec, tmp_path, fingerprint="f", progress=False)
    space = _space()
    assert result.mean == space.full(result.mean_x)  # a genome like any other, pinned genes included
    assert all(0.0 <= v <= 0.5 for v in result.mean_x)
    assert json.loads((tmp_path / "best.json").read_text())["mean"] == result.mean
    # under noise the mean, an average over generations, is nearer the optimum than the luckiest candidate
    mean_err = np.abs(np.array(result.mean) - TARGET).max()
    best_err = np.abs(np.array(result.genome) - TARGET).max()
    assert mean_err < best_err, (mean_err, best_err)


def test_frozen_layers_are_exactly_zero_and_bounds_hold_in_every_logged_candidate(tmp_path):
    spec = SearchSpec(popsize=8, sigma0=0.3, max_generations=4, seed=3)
    run_search(_space(), quadratic, spec, tmp_path, fingerprint="f", progress=False)
    rows = [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()]
    assert len(rows) == 32
    for row in rows:
        assert all(row["genome"][i] == 0.0 for i in FROZEN)
        assert all(0.0 <= r <= 0.5 for r in row["genome"])
        assert set(row) == {"generation", "candidate", "genome", "scores", "fitness", "seconds", "worker", "x"}
        assert _space().full(row["x"]) == row["genome"]  # CMA-ES's raw point, which the space maps to the genome


def test_interrupted_search_resumes_to_the_same_genome_and_log(tmp_path):
    spec = SearchSpec(popsize=6, sigma0=0.1, max_generations=5, seed=7)
    full = run_search(_space(), quadratic, spec, tmp_path / "full", fingerprint="f", progress=False)

    calls = {"n": 0}

    def interrupted(genome):
        calls["n"] += 1
        if calls["n"] == 2 * 6 + 3:  # Ctrl-C in the middle of generation 3
            raise KeyboardInterrupt
        np.random.seed(calls["n"])  # like lm-eval reseeding the global generator: must not matter
        return quadratic(genome)

    with pytest.raises(KeyboardInterrupt):
        run_search(_space(), interrupted, spec, tmp_path / "cut", fingerprint="f", progress=False)
    resumed = run_search(_space(), quadratic, spec, tmp_path / "cut", fingerprint="f", resume=True, progress=False)
    assert resumed.genome == full.genome
    assert resumed.evaluations == full.evaluations == 30
    assert _strip_seconds(tmp_path / "cut" / LOG) == _strip_seconds(tmp_path / "full" / LOG)


def test_killed_process_resumes_to_the_same_genome(tmp_path):
    """A real SIGKILL after generation 2's checkpoint, then --resume in a fresh process."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time, json
        sys.path.insert(0, {os.getcwd()!r})
        from tests.test_search import _space, quadratic
        from release.config import SearchSpec
        from release.search.cmaes import run_search
        slow = sys.argv[2] == "slow"
        def fitness(g):
            if slow: time.sleep(0.05)
            return quadratic(g)
        spec = SearchSpec(popsize=6, sigma0=0.1, max_generations=6, seed=11)
        r = run_search(_space(), fitness, spec, __import__("pathlib").Path(sys.argv[1]), fingerprint="f",
                       resume=sys.argv[3] == "resume", progress=False)
        print(json.dumps(r.genome))
    """))
    ref = subprocess.run([sys.executable, script, tmp_path / "ref", "fast", "new"], capture_output=True, text=True, check=True)
    proc = subprocess.Popen([sys.executable, script, tmp_path / "cut", "slow", "new"], stdout=subprocess.PIPE)
    ckpt = tmp_path / "cut" / CHECKPOINT
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ckpt.exists() and read_checkpoint(ckpt)[0]["generation"] >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    generation = read_checkpoint(ckpt)[0]["generation"]
    assert 2 <= generation < 6
    out = subprocess.run([sys.executable, script, tmp_path / "cut", "fast", "resume"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == json.loads(ref.stdout)
    assert _strip_seconds(tmp_path / "cut" / LOG) == _strip_seconds(tmp_path / "ref" / LOG)


def test_corrupt_or_foreign_checkpoint_is_refused_in_one_line(tmp_path):
    spec = SearchSpec(popsize=4, sigma0=0.1, max_generations=1, seed=1)
    run_search(_space(), quadratic, spec, tmp_path, fingerprint="config-a", progress=False)
    with pytest.raises(ReleaseError, match="another config") as e:
        run_search(_space(), quadratic, spec, tmp_path, fingerprint="config-b", resume=True, progress=False)
    assert "\n" not in str(e.value)
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ReleaseError, match="corrupt") as e:
        run_search(_space(), quadratic, spec, tmp_path, fingerprint="config-a", resume=True, progress=False)
    assert "\n" not in str(e.value)


def test_stop_rules(tmp_path):
    r = run_search(_space(), quadratic, SearchSpec(popsize=4, max_generations=None, max_evaluations=10, seed=1),
                   tmp_path / "a", fingerprint="f", progress=False)
    assert r.stop_reason == "max_evaluations" and r.evaluations == 12  # whole generations only
    r = run_search(_space(), quadratic, SearchSpec(popsize=4, max_generations=None, time_budget_s=0.2, seed=1),
                   tmp_path / "b", fingerprint="f", progress=False)
    assert r.stop_reason == "time_budget"
    flat = lambda g: (0.0, {})  # noqa: E731  - cma's own convergence test ends a flat landscape
    r = run_search(_space(), flat, SearchSpec(popsize=4, max_generations=None, seed=1), tmp_path / "c",
                   fingerprint="f", progress=False)
    assert r.stop_reason.startswith("cma:")


def test_genome_space_rejects_bad_specs():
    with pytest.raises(ReleaseError, match="frozen names layers"):
        GenomeSpace(6, GenomeSpec(frozen=[6]))
    with pytest.raises(ReleaseError, match="scales"):
        GenomeSpace(6, GenomeSpec(scales=[1.0]))
    with pytest.raises(ReleaseError, match="every layer"):
        GenomeSpace(2, GenomeSpec(frozen=[0, 1]))


def _interrupt_in_generation(n_before: int):
    """A fitness that raises KeyboardInterrupt at its `n_before + 1`-th call."""
    calls = {"n": 0}

    def fitness(genome):
        calls["n"] += 1
        if calls["n"] > n_before:
            raise KeyboardInterrupt
        return quadratic(genome)

    return fitness


@pytest.mark.parametrize("legacy", [False, True], ids=["checkpoint", "older-checkpoint"])
@pytest.mark.parametrize("tail", [
    b'{"generation": 2, "candidate": 0, "gen',  # torn: the kill came during the append
    b"\xff\xfe garbage without a newline",
    "whole lines of generation 2, whose checkpoint was never written",
])
def test_a_torn_or_unsaved_log_tail_resumes_to_the_same_genome_and_log(tmp_path, tail, legacy):
    spec = SearchSpec(popsize=6, sigma0=0.1, max_generations=5, seed=7)
    full = run_search(_space(), quadratic, spec, tmp_path / "full", fingerprint="f", progress=False)
    with pytest.raises(KeyboardInterrupt):  # stops after generation 2's checkpoint
        run_search(_space(), _interrupt_in_generation(2 * 6), spec, tmp_path / "cut", fingerprint="f",
                   progress=False)
    log_path = tmp_path / "cut" / LOG
    if legacy:  # a checkpoint written before it recorded the log's length
        state, candidates, fitness = read_checkpoint(tmp_path / "cut" / CHECKPOINT)
        del state["log_bytes"]
        save_checkpoint(tmp_path / "cut" / CHECKPOINT, state, candidates, fitness)
    if isinstance(tail, str):  # the next generation's lines reached the log, then the kill came
        tail = b"".join(line + b"\n" for line in (tmp_path / "full" / LOG).read_bytes().splitlines()[12:18])
    with log_path.open("ab") as f:
        f.write(tail)
    resumed = run_search(_space(), quadratic, spec, tmp_path / "cut", fingerprint="f", resume=True, progress=False)
    assert resumed.genome == full.genome and resumed.evaluations == full.evaluations == 30
    assert _strip_seconds(log_path) == _strip_seconds(tmp_path / "full" / LOG)


def test_a_log_shorter_than_its_checkpoint_is_refused_in_one_line(tmp_path):
    spec = SearchSpec(popsize=4, sigma0=0.1, max_generations=2, seed=1)
    run_search(_space(), quadratic, spec, tmp_path, fingerprint="f", progress=False)
    log_path = tmp_path / LOG
    log_path.write_bytes(log_path.read_bytes()[:100])
    with pytest.raises(ReleaseError, match="shorter than its checkpoint") as e:
        run_search(_space(), quadratic, spec.model_copy(update={"max_generations": 3}), tmp_path,
                   fingerprint="f", resume=True, progress=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_fitness_is_an_error_never_a_result(tmp_path, bad):
    calls = {"n": 0}

    def fitness(genome):
        calls["n"] += 1
        return (bad, {"quad": bad}) if calls["n"] == 7 else quadratic(genome)  # in generation 1

    spec = SearchSpec(popsize=4, sigma0=0.1, max_generations=3, seed=1)
    with pytest.raises(ReleaseError, match="fitness of candidate 2 in generation 1") as e:
        run_search(_space(), fitness, spec, tmp_path, fingerprint="f", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "best.json").exists()
    rows = [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()]
    assert {r["generation"] for r in rows} == {0}  # the failed generation left nothing behind


def test_a_pickled_checkpoint_is_never_loaded(tmp_path):
    """Issue 22 item 12: anyone who can write the run folder must not get code execution on --resume."""
    import pickle

    spec = SearchSpec(popsize=4, sigma0=0.1, max_generations=1, seed=1)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "checkpoint.pkl").write_bytes(pickle.dumps({"es": Payload(), "state": Payload()}))
    fresh = run_search(_space(), quadratic, spec, tmp_path / "fresh", fingerprint="f", progress=False)
    resumed = run_search(_space(), quadratic, spec, tmp_path, fingerprint="f", resume=True, progress=False)
    assert not marker.exists() and not (tmp_path / "checkpoint.pkl").exists()
    assert resumed.genome == fresh.genome and resumed.evaluations == fresh.evaluations  # started over
    # The checkpoint itself is plain data: numpy refuses any object array in it.
    run_search(_space(), quadratic, spec, tmp_path / "new", fingerprint="f", progress=False)
    import numpy

    with numpy.load(tmp_path / "new" / CHECKPOINT, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["candidates", "fitness", "format", "state"]
        assert all(saved[k].dtype != object for k in saved.files)


def test_a_checkpoint_whose_candidates_were_changed_is_refused(tmp_path):
    spec = SearchSpec(popsize=4, sigma0=0.1, max_generations=2, seed=1)
    run_search(_space(), quadratic, spec, tmp_path, fingerprint="f", progress=False)
    state, candidates, fitness = read_checkpoint(tmp_path / CHECKPOINT)
    candidates[1, 0, 0] += 0.01  # a genome CMA-ES never asked for
    save_checkpoint(tmp_path / CHECKPOINT, state, candidates, fitness)
    with pytest.raises(ReleaseError, match="does not match this search") as e:
        run_search(_space(), quadratic, spec.model_copy(update={"max_generations": 3}), tmp_path, fingerprint="f",
                   resume=True, progress=False)
    assert "\n" not in str(e.value)
