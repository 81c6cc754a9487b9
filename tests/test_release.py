"""`make release` end to end: the embedded default from a clean state, served again, rerun, resumed.

Each run is the real CLI in a subprocess with its own HF home and its own local Hub endpoint, exactly
as `make release` runs it (only the run folder, the store and the port are moved into a temp dir).
The first release and the killed-and-resumed one start with the session, in the background
(tests/background.py): each in its own folder, store and port.
"""

import json
import math
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from release.search.checkpoint import read_checkpoint
from tests.background import early_run
from tests.cli import ROOT, free_port, isolated_env, run_cli, run_cli_to_file

RUN_TIMEOUT = 400




def _config(tmp: Path, name: str = "tiny-default", port: int | None = None, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw.update(name=name, runs_dir=str(tmp / "runs"))
    raw["hub"].update(local_root=str(tmp / "hub"), local_port=port or PORT)
    for key, value in changes.items():
        raw[key] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _release(tmp: Path, config: Path, *args, timeout=RUN_TIMEOUT, environ=None) -> subprocess.CompletedProcess:
    return run_cli(tmp, "run", str(config), *args, timeout=timeout, environ=environ)


PORT = free_port()


@early_run
def default_release(tmp: Path, env: dict):
    config = _config(tmp)
    t0 = time.monotonic()
    out = run_cli_to_file(tmp, tmp / "release.log", "run", str(config), timeout=RUN_TIMEOUT,
                          environ=env)  # as CI runs it
    return tmp, config, out, time.monotonic() - t0


@pytest.fixture(scope="module")
def first_release(default_release):
    tmp, config, out, seconds = default_release
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp, config, out, seconds


def test_release_json_records_the_whole_release(first_release):
    tmp, config, out, seconds = first_release
    release = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    assert release["endpoint"] == f"http://127.0.0.1:{PORT}"
    assert release["child_repo"] == "darwin-local/tiny-darwin-child"
    assert re.fullmatch(r"[0-9a-f]{40}", release["child_revision"])
    assert release["space_repo"] == "darwin-local/tiny-darwin-chat"
    assert re.fullmatch(r"[0-9a-f]{40}", release["space_revision"])
    for role in ("father", "mother"):
        assert re.fullmatch(r"[0-9a-f]{40}", release[role]["revision"])
    assert len(release["genome"]) == len(release["layer_map"]) == 6
    assert release["frozen"] == [4] and release["genome"][4] == 0.0
    assert all(0.0 <= r <= 0.5 or r == 1.0 for r in release["genome"])  # 1.0: a transplanted mother FFN
    # Darwin MRI (the default turns on trust and transplant): tau learned, r_MRI per layer, health passed.
    assert 0.0 <= release["tau"] <= 1.0 and len(release["r_mri"]) == 6
    assert release["transplant"]["kept"] in (True, False)
    if release["transplant"]["kept"]:
        assert all(r == 0.0 or r >= 0.15 for r in release["genome"])  # nothing below the threshold ships
    card = (tmp / "runs/tiny-default/child/README.md").read_text(encoding="utf-8")
    assert "## Darwin MRI" in card and "## Health check" in card and "](mri.png)" in card
    assert (tmp / "runs/tiny-default/child/health.png").is_file()
    assert (tmp / "runs/tiny-default/mri/mri.json").is_file() and (tmp / "runs/tiny-default/health/health.json").is_file()
    assert release["health"] == {"passed": True, "flagged_layers": [], "reasons": []}
    assert release["layer_kinds"][4] == "father"
    assert release["mixing_rule"] == "ffn_output_blend"
    assert set(release["scores"]) == {"child", "father", "mother"}
    # The default breeds the trained zoo: the cross-architecture child is never worse than the father beyond one
    # combined stderr (r = 0 is the father), and the vigor verdict follows from the numbers (both parents cleared).
    fit = {m: (release["scores"][m]["fitness"], release["stderr"][m]["fitness"]) for m in release["scores"]}
    assert fit["child"][0] >= fit["father"][0] - math.hypot(fit["child"][1], fit["father"][1])
    assert release["vigor"]["claimed"] == all(fit["child"][0] - fit[p][0] > math.hypot(fit["child"][1], fit[p][1])
                                              for p in ("father", "mother"))
    # lm-eval's own results files for the three models are pushed with the child (the card reads them).
    files = sorted((tmp / "runs/tiny-default/child/eval_results").glob("*/results_*.json"))
    results = [json.loads(f.read_text())["results"] for f in files]  # one per model, every fitness task in each
    assert len(files) == 3 and all(r and all(any(k.startswith("acc,") for k in task) for task in r.values())
                                   for r in results)
    assert release["verify"]["max_abs_logit_diff"] == 0.0 and release["verify"]["reply"].strip()
    assert release["wall_seconds"] > 0
    assert release["stages_run"] == ["pull", "mri", "breed", "emit", "health", "evaluate", "card", "push", "space",
                                     "verify"]
    # The summary tells a person where things are and how to load and chat.
    assert "released darwin-local/tiny-darwin-child" in out.stdout and "trust_remote_code=True" in out.stdout
    assert f"darwin-release space-serve {config}" in out.stdout
    assert re.search(r"child +\S+ [01]\.\d{3} ± [01]\.\d{3}", out.stdout) and "hybrid vigor: " in out.stdout
    assert seconds < 300, f"the embedded default took {seconds:.0f} s (budget: 5 minutes)"


def test_the_log_written_to_a_file_reads_line_by_line(first_release):
    """Output for CI: no bars, colours or cursor moves; one line per stage and per search generation; no
    spurious missing-weights report from the final evaluation; no warning printed twice."""
    tmp, _, out, _ = first_release
    log = (tmp / "release.log").read_bytes()
    assert b"\r" not in log and b"\x1b" not in log
    lines = log.decode().splitlines()
    assert max(map(len, lines)) <= 300
    stage_lines = [line for line in lines if re.match(r"\[\d+/10\] ", line)]
    assert [line.split(":")[0] for line in stage_lines] == [
        f"[{i}/10] {stage}" for i, stage in enumerate(["pull", "mri", "breed", "emit", "health", "evaluate", "card",
                                                       "push", "space", "verify"], 1)]
    assert [line.split(":")[0].strip() for line in lines if line.strip().startswith("generation ")] == [
        f"generation {g}/4" for g in range(1, 5)]
    assert "MISSING" not in out.stdout and "newly initialized" not in out.stdout
    # A library's record printed by its own handler and again by ours differs only by our prefix.
    said = [re.sub(r"^\S+ \S+ [A-Z]+ \S+: ", "", line) for line in lines if line.strip()]
    assert len(said) == len(set(said)), [line for line in said if said.count(line) > 1]
    assert len(lines) < 60, "\n".join(lines)


def test_the_printed_commands_serve_the_store_again_and_the_child_loads_and_generates(first_release):
    tmp, _, printed, _ = first_release
    release = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    lines = printed.stdout.splitlines()
    serve_line = lines[lines.index("serve this config's store again (in another terminal; reading needs no token):") + 1]
    load_line = lines[lines.index("load it (with the store served):") + 1]
    hub = subprocess.Popen(shlex.split(serve_line), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        for _ in range(100):  # wait until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", PORT)) == 0:
                    break
            time.sleep(0.1)
        script = (
            "import sys\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "repo, rev = sys.argv[1], sys.argv[2]\n"
            "model = AutoModelForCausalLM.from_pretrained(repo, revision=rev, trust_remote_code=True)\n"
            "tok = AutoTokenizer.from_pretrained(repo, revision=rev, trust_remote_code=True)\n"
            "ids = tok.apply_chat_template([{'role': 'user', 'content': 'Hello!'}], add_generation_prompt=True,\n"
            "                              return_tensors='pt', return_dict=True)\n"
            "out = model.generate(**ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)\n"
            "print('GENERATED', out.shape[1] - ids['input_ids'].shape[1], repr(tok.decode(out[0])))\n"
        )
        env = isolated_env(tmp) | {"HF_HOME": str(tmp / "fresh-home")}
        loaded = subprocess.run(load_line, shell=True, capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
        assert loaded.returncode == 0, loaded.stderr[-3000:]  # as printed
        env["HF_ENDPOINT"] = release["endpoint"]
        out = subprocess.run([sys.executable, "-c", script, release["child_repo"], release["child_revision"]],
                             capture_output=True, text=True, env=env, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "GENERATED 12" in out.stdout
    finally:
        hub.terminate()
        hub.wait(10)


def test_running_again_does_no_stage_twice_and_makes_no_commit(first_release):
    tmp, config, _, _ = first_release
    before = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    out = _release(tmp, config)
    assert out.returncode == 0, out.stderr[-3000:]
    after = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    assert after["stages_run"] == []
    assert "[1/10] pull: up to date" in out.stdout and "pulled father" not in out.stdout  # nothing was pulled
    assert after["child_revision"] == before["child_revision"]
    assert after["space_revision"] == before["space_revision"]
    assert after["genome"] == before["genome"]


def _hub_commits(tmp: Path, repo: str) -> list[str]:
    from huggingface_hub import HfApi

    from release.localhub import serve

    server = serve(tmp / "hub", port=0)  # the run's own endpoint is down between runs: serve the store again
    try:
        return [c.commit_id for c in HfApi(endpoint=server.url).list_repo_commits(repo)]
    finally:
        server.stop()


def test_a_damaged_child_in_the_run_folder_never_reaches_the_hub(first_release):
    tmp, config, _, _ = first_release
    before = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    commits = _hub_commits(tmp, before["child_repo"])
    child = tmp / "runs/tiny-default/child"
    shard = max(child.glob("*.safetensors"), key=lambda p: p.stat().st_size)
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])  # a damaged disk, a half-finished copy
    out = _release(tmp, config)
    assert out.returncode == 0, out.stderr[-3000:]
    after = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    assert "emit" in after["stages_run"]  # the stage that wrote the shard wrote it again
    assert "push" not in after["stages_run"] and after["child_revision"] == before["child_revision"]
    assert shard.read_bytes() == whole
    assert _hub_commits(tmp, before["child_repo"]) == commits  # no commit, damaged or not
    verified = run_cli(tmp, "verify", str(config), "--force", "verify")
    assert verified.returncode == 0, verified.stderr[-3000:]

    # A file no stage wrote is not pushed either: one line, nothing written to the Hub.
    (child / "stray.bin").write_bytes(b"not part of the release")
    out = _release(tmp, config)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert "stray.bin" in out.stderr and "Traceback" not in out.stderr
    assert _hub_commits(tmp, before["child_repo"]) == commits
    (child / "stray.bin").unlink()


def _stop_after_generation(tmp: Path, config: Path, name: str, generation: int, how: int, env: dict):
    """Start `run CONFIG`, send `how` once the search checkpoint holds `generation` generations; returns the
    finished process (stderr captured) and the generation the checkpoint held."""
    cmd = [sys.executable, "-m", "release", "run", str(config), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=isolated_env(tmp, env), cwd=ROOT)
    checkpoint = tmp / f"runs/{name}/breed/checkpoint.npz"
    deadline = time.monotonic() + RUN_TIMEOUT
    reached = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            reached = read_checkpoint(checkpoint)[0]["generation"]  # written whole, by rename
            if reached >= generation:
                break
        time.sleep(0.05)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)  # SIGTERM must stop it within seconds, wherever it is
    return proc, err, read_checkpoint(checkpoint)[0]["generation"]


@early_run
def killed_and_resumed(tmp: Path, env: dict):
    """The default's search stopped by SIGTERM after generation 1 and by SIGKILL after the next one, then the
    same command run to the end. Same parents, genome, search and fitness as the first release; another
    folder, store, port and child repo, no Space. Returns what each step left, for the test to check."""
    config = _config(tmp, name="killed", port=free_port(),
                     child={"repo": "darwin-local/tiny-darwin-child-resumed", "max_shard_size": "500KB"}, space=None)
    terminated = _stop_after_generation(tmp, config, "killed", 1, signal.SIGTERM, env)
    killed = _stop_after_generation(tmp, config, "killed", terminated[2] + 1, signal.SIGKILL, env)
    released_before_the_rerun = (tmp / "runs/killed/release.json").exists()
    out = _release(tmp, config, environ=env)
    return tmp, terminated, killed, released_before_the_rerun, out


def test_killed_during_the_search_resumes_to_the_same_genome(first_release, killed_and_resumed):
    tmp, _, _, _ = first_release
    reference = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    killed_tmp, (proc, err, generation), (_, _, generation_killed), released, out = killed_and_resumed
    # SIGTERM (issue 22 item 10): a clean stop, as Ctrl-C, one line; the checkpoint stays whole.
    assert proc.returncode == 128 + signal.SIGTERM, err
    # (the datasets library draws its own bars on stderr while the search builds its items)
    assert err.strip().splitlines()[-1] == "interrupted: run the same command again to continue where it stopped"
    assert "Traceback" not in err and "error" not in err.lower(), err
    assert 1 <= generation < 4
    # SIGKILL: no cleanup at all.
    assert 2 <= generation_killed < 4, "the run should be killed in the middle of its 4-generation search"
    assert not released
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = json.loads((killed_tmp / "runs/killed/release.json").read_text())
    assert resumed["genome"] == reference["genome"]
    assert resumed["search"]["evaluations"] == reference["search"]["evaluations"]
    assert resumed["scores"]["child"] == reference["scores"]["child"]


def test_a_wiped_hub_store_is_republished_without_searching_again(first_release):
    tmp, config, _, _ = first_release
    before = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    shutil.rmtree(tmp / "hub")
    out = _release(tmp, config)
    assert out.returncode == 0, out.stderr[-3000:]
    after = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    assert "breed" not in after["stages_run"]  # same parent content: the search result stands
    assert {"pull", "push", "space", "verify"} <= set(after["stages_run"])
    assert after["genome"] == before["genome"]
    assert after["father"]["revision"] != before["father"]["revision"]  # republished: new commits


def test_every_stage_record_reads_back_to_the_json_it_was_written_as(first_release):
    """The run folder's JSON is the records' format: reading a stage's result into its record and writing
    it again gives the same JSON, key for key (so a rerun's stage keys, and release.json, do not change)."""
    from release.run import records

    tmp, _, _, _ = first_release
    stages = json.loads((tmp / "runs/tiny-default/stages.json").read_text())
    kinds = {"pull": records.Pulled, "mri": records.Diagnosis, "breed": records.Bred, "emit": records.Emitted,
             "health": records.Health, "evaluate": records.Evaluated, "card": records.Carded,
             "push": records.Pushed, "space": records.Deployed, "verify": records.Verified}
    assert set(stages) == set(kinds)
    for stage, record in kinds.items():
        stored = stages[stage]["result"]
        assert record.from_json(stored).to_json() == stored, stage
    bred = records.Bred.from_json(stages["breed"]["result"])
    assert bred.live == {"layer_map": stages["breed"]["result"]["layer_map"]}  # the breeder's own facts


def test_the_pushed_child_is_reproduced_bit_for_bit_from_its_record(first_release):
    """`darwin-release reproduce`: the default's child rebuilt from its darwin_genome.json and the parents'
    recorded commits, every tensor compared; the record keeps CMA-ES's raw point and the library versions."""
    import transformers

    tmp, config, _, _ = first_release
    release = json.loads((tmp / "runs/tiny-default/release.json").read_text())
    genome = json.loads((tmp / "runs/tiny-default/child/darwin_genome.json").read_text())
    assert genome["method"] == "ffn_blend" and genome["tool"]["transformers"] == transformers.__version__
    assert len(genome["search"]["x"]) == 5 + 1  # the free layers' coordinates and tau, as CMA-ES held them
    out = run_cli(tmp, "reproduce", release["child_repo"], "--config", str(config))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"reproduced bit for bit: {release['child_repo']}@{release['child_revision'][:12]} (ffn_blend)" in out.stdout
    assert "note:" not in out.stdout  # the searched ratios follow from search.x through tau and r_MRI; same versions
