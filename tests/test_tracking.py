"""Live tracking with trackio: one row per candidate and per generation, across a SIGKILL and a resume."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("trackio")

from release.search.checkpoint import read_checkpoint  # noqa: E402
from release.search.cmaes import CHECKPOINT, LOG, run_search  # noqa: E402
from release.search.tracking import TrackioTracker, logged_rows  # noqa: E402
from tests.background import early_run  # noqa: E402
from tests.test_search import FROZEN, _space, quadratic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POPSIZE, GENERATIONS = 5, 4

SCRIPT = textwrap.dedent(f"""
    import sys, time, json
    from pathlib import Path
    sys.path.insert(0, {str(ROOT)!r})
    from tests.test_search import _space, quadratic, FROZEN
    from release.config import SearchSpec
    from release.search.cmaes import run_search
    from release.search.tracking import TrackioTracker
    folder, project, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    def fitness(g):
        if mode == "slow": time.sleep(0.05)
        return quadratic(g)
    space = _space()
    spec = SearchSpec(popsize={POPSIZE}, sigma0=0.1, max_generations={GENERATIONS}, seed=11)
    tracker = TrackioTracker(project, "fp-1234", folder, {POPSIZE}, space.names, FROZEN, 0.5)
    r = run_search(space, fitness, spec, folder, fingerprint="fp-1234", resume=mode == "resume", progress=False,
                   callbacks=(tracker,))
    print(json.dumps(r.genome))
""")


@early_run
def killed_tracked_search(tmp_path, env):
    """A tracked search killed inside generation 3 and resumed (in the background from the session's start:
    tests/background.py)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    project = f"track-{uuid.uuid4().hex[:6]}"
    env = {**env, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, script, tmp_path, project, "slow"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, deadline = tmp_path / CHECKPOINT, time.monotonic() + 120
    while time.monotonic() < deadline:  # kill inside generation 3, after generation 2's checkpoint
        if ckpt.exists() and read_checkpoint(ckpt)[0]["generation"] >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.12)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    generation = read_checkpoint(ckpt)[0]["generation"]
    out = subprocess.run([sys.executable, script, tmp_path, project, "resume"], env=env, capture_output=True,
                         text=True, timeout=120)
    return tmp_path, project, generation, out


def test_killed_and_resumed_search_has_exactly_one_row_per_candidate_and_generation(killed_tracked_search):
    tmp_path, project, generation, out = killed_tracked_search
    assert 2 <= generation < GENERATIONS
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout.splitlines()) == 1  # the genome alone: trackio's banners go to the log, not stdout

    from trackio.sqlite_storage import SQLiteStorage

    rows = SQLiteStorage.get_logs(project, "fp-1234")
    candidate_rows = [r for r in rows if "candidate/index" in r]
    generation_rows = [r for r in rows if "generation/index" in r]
    keys = [(int(r["candidate/generation"]), int(r["candidate/index"])) for r in candidate_rows]
    assert sorted(keys) == [(g, k) for g in range(GENERATIONS) for k in range(POPSIZE)]  # each exactly once
    assert sorted(int(r["generation/index"]) for r in generation_rows) == list(range(GENERATIONS))
    assert logged_rows(project, "fp-1234") == (set(keys), set(range(GENERATIONS)))
    # The rows hold the search's own values.
    lines = {(x["generation"], x["candidate"]): x for x in map(json.loads, (tmp_path / LOG).read_text().splitlines())}
    for r in candidate_rows:
        line = lines[(int(r["candidate/generation"]), int(r["candidate/index"]))]
        assert r["candidate/fitness"] == pytest.approx(line["fitness"])
        assert [r[f"genome/r.{i}"] for i in range(len(line["genome"]))] == pytest.approx(line["genome"])
    assert all("best_genome" in r for r in generation_rows), generation_rows[0]


def test_a_failing_tracker_warns_once_and_the_search_goes_on(tmp_path, caplog, monkeypatch):
    from release.config import SearchSpec

    spec = SearchSpec(popsize=4, sigma0=0.1, max_generations=3, seed=2)
    plain = run_search(_space(), quadratic, spec, tmp_path / "plain", fingerprint="f", progress=False)
    tracker = TrackioTracker(f"broken-{uuid.uuid4().hex[:6]}", "f", tmp_path / "tracked", 4, _space().names,
                             FROZEN, 0.5)
    import trackio

    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trackio, "init", refuse)
    with caplog.at_level(logging.WARNING, logger="release"):
        tracked = run_search(_space(), quadratic, spec, tmp_path / "tracked", fingerprint="f", progress=False,
                             callbacks=(tracker,))
    assert tracked.genome == plain.genome
    warnings = [r for r in caplog.records if "tracking" in r.getMessage()]
    assert len(warnings) == 1 and "disk full" in warnings[0].getMessage()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no Chromium at /usr/bin/chromium")
def test_dashboard_in_the_browser_shows_the_run_and_its_fitness_plot(tmp_path):
    from playwright.sync_api import sync_playwright

    from release.config import SearchSpec
    from release.search.tracking import open_dashboard
    from tests.localhub_fixtures import free_port
    from tests.test_space_browser import CHROMIUM, CHROMIUM_ARGS

    project, run = f"dash-{uuid.uuid4().hex[:6]}", "fp-dashboard"
    tracker = TrackioTracker(project, run, tmp_path, 4, _space().names, FROZEN, 0.5)
    run_search(_space(), quadratic, SearchSpec(popsize=4, max_generations=2, seed=1), tmp_path, fingerprint=run,
               progress=False, callbacks=(tracker,))
    server, url = open_dashboard(project, port=free_port(), open_browser=False, block=False)
    try:
        assert url.startswith("http://127.0.0.1:")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url.rstrip('/')}/?project={project}")
            page.get_by_text(run, exact=True).first.wait_for(timeout=60_000)  # the run, in the run list
            plot = page.get_by_text("fitness", exact=True).first  # the candidates' fitness plot, by its title
            plot.wait_for(timeout=60_000)
            panel = plot.locator("xpath=ancestor::*[.//svg or .//canvas][1]")
            assert panel.locator("svg, canvas").count() >= 1
            assert page.get_by_text("best_so_far", exact=True).count() >= 1  # the generations' plots too
            browser.close()
    finally:
        server.close()


def test_search_track_in_the_config_logs_the_breed_stage_under_release_name_and_fingerprint(local_hub, tmp_path):
    from trackio.sqlite_storage import SQLiteStorage

    from release.config import ReleaseConfig
    from release.pipeline import RunOptions, run_release

    ns = f"track-{uuid.uuid4().hex[:6]}"
    config = ReleaseConfig.model_validate({
        "name": f"tracked-{ns}", "tiny_parents": True,
        "father": {"repo": f"{ns}/father"}, "mother": {"repo": f"{ns}/mother"}, "child": {"repo": f"{ns}/child"},
        "genome": {"frozen": [2], "r_max": 0.6, "init_mean": 0.3},
        "search": {"popsize": 3, "sigma0": 0.2, "max_generations": 2, "seed": 5, "track": True},
        "fitness": {"kind": "calibration"}, "hub": {"endpoint": local_hub.url}, "runs_dir": str(tmp_path),
    })
    os.environ["HF_TOKEN"] = local_hub.tokens[0]
    try:
        run_release(config, RunOptions(only=("breed",), progress=False))
    finally:
        os.environ.pop("HF_TOKEN", None)
    fingerprint = read_checkpoint(config.run_dir / "breed" / CHECKPOINT)[0]["fingerprint"]
    rows = SQLiteStorage.get_logs(config.name, fingerprint)
    fitness = sorted(r["candidate/fitness"] for r in rows if "candidate/index" in r)
    lines = [json.loads(line) for line in (config.run_dir / "breed" / LOG).read_text().splitlines()]
    assert fitness == pytest.approx(sorted(line["fitness"] for line in lines)) and len(fitness) == 6
    assert sum("generation/index" in r for r in rows) == 2


def test_track_space_pushes_a_dashboard_space_that_serves_the_runs_rows(local_hub, tmp_path, monkeypatch):
    import urllib.request

    from huggingface_hub import snapshot_download

    from release.config import SearchSpec
    from tests.localhub_fixtures import free_port

    monkeypatch.setenv("HF_TOKEN", local_hub.tokens[0])
    project, run, space = f"spaced-{uuid.uuid4().hex[:6]}", "fp-space", f"darwin-local/dash-{uuid.uuid4().hex[:6]}"
    tracker = TrackioTracker(project, run, tmp_path / "breed", 3, _space().names, FROZEN, 0.5, space=space)
    run_search(_space(), quadratic, SearchSpec(popsize=3, max_generations=2, seed=4), tmp_path / "breed",
               fingerprint=run, progress=False, callbacks=(tracker,))
    assert not tracker.space_broken
    folder = Path(snapshot_download(space, repo_type="space", local_dir=tmp_path / "space"))
    assert {"app.py", "requirements.txt", "README.md"} <= {p.name for p in folder.iterdir()}
    assert list((folder / "trackio" / "media").rglob("*.png"))  # the best-genome images travel too

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKIO_DIR": str(folder / "trackio"), "TRACKIO_PROJECT": project}
    read = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage\n"
            f"rows = SQLiteStorage.get_logs({project!r}, {run!r})\n"
            "print(json.dumps([sum('candidate/index' in r for r in rows), sum('generation/index' in r for r in rows)]))")
    out = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [6, 2], out.stderr[-2000:]

    port = free_port()  # the Space's own app, as the Hub would run it (variables become environment variables)
    app = subprocess.Popen([sys.executable, folder / "app.py"], env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/?project={project}", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and app.poll() is None, "the Space app did not come up"
                time.sleep(0.5)
        assert b"<html" in page.lower() or b"<!doctype" in page.lower()
    finally:
        app.kill()
        app.wait()


def test_without_trackio_the_search_warns_once_naming_the_extra_and_watch_is_a_one_line_error(
        tmp_path, caplog, monkeypatch):
    from release.config import SearchSpec
    from release.errors import ReleaseError
    from release.search.tracking import open_dashboard

    monkeypatch.setitem(sys.modules, "trackio", None)  # import trackio -> ImportError, as when not installed
    monkeypatch.setitem(sys.modules, "trackio.sqlite_storage", None)
    tracker = TrackioTracker("absent", "f", tmp_path, 4, _space().names, FROZEN, 0.5)
    with caplog.at_level(logging.WARNING, logger="release"):
        result = run_search(_space(), quadratic, SearchSpec(popsize=4, max_generations=2, seed=2), tmp_path,
                            fingerprint="f", progress=False, callbacks=(tracker,))
    assert result.evaluations == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pip install darwin-release[track]" in warnings[0]
    with pytest.raises(ReleaseError, match=r"pip install darwin-release\[track\]") as e:
        open_dashboard("absent", open_browser=False, block=False)
    assert "\n" not in str(e.value)


def test_watch_command_serves_the_dashboard_on_127_0_0_1(tmp_path):
    import urllib.request

    import yaml

    from tests.localhub_fixtures import free_port

    config = tmp_path / "watch.yaml"
    config.write_text(yaml.safe_dump({
        "name": "watched", "father": {"repo": "a/father"}, "mother": {"repo": "a/mother"}, "child": {"repo": "a/child"},
        "search": {"track": True}, "fitness": {"kind": "calibration"}}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "release", "watch", str(config), "--port", str(port),
                             "--no-browser"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/?project=watched", timeout=5).status == 200
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the dashboard did not come up"
                time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
