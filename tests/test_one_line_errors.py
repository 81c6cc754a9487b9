"""The README's promise, checked through the real CLI: every error is one line, and nothing is done.

Each broken config below once ran into a traceback, was silently accepted, or failed only after the
whole pipeline had run. Every one must now stop at load time: exit status 2, one line on stderr that
starts with "error:", no traceback, and nothing written to the run folder.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from release.run.stages import folder_digest

ROOT = Path(__file__).resolve().parents[1]
PARENTS = "father: {repo: a/father}\nmother: {repo: a/mother}\n"
CALIBRATION = "fitness: {kind: calibration}\n"
SYNTHETIC = "fitness: {tasks: [{name: synthetic, weight: %s}]}\n"


def _config(name="t", child="a/child", fitness=CALIBRATION, extra="", shards="5GB"):
    return f"name: {name}\n{PARENTS}child: {{repo: {child}, max_shard_size: {shards}}}\n{fitness}{extra}"


BROKEN = {
    # Item 8: a name that is only dots makes the runs folder, or the checkout, the run folder.
    "name-dotdot": _config(name='".."'),
    "name-dot": _config(name='"."'),
    "name-dots": _config(name='"..."'),
    # Item 9: non-finite numbers anywhere a float is accepted.
    "weight-inf": _config(fitness=SYNTHETIC % ".inf"),
    "weight-nan": _config(fitness=SYNTHETIC % ".nan"),
    "r_max-nan": _config(extra="genome: {r_max: .nan}\n"),
    "sigma0-inf": _config(extra="search: {sigma0: .inf}\n"),
    "time-budget-inf": _config(extra="search: {time_budget_s: .inf}\n"),
    "scales-nan": _config(extra="genome: {scales: [1.0, .nan]}\n"),
    # Smaller things: values that were silently accepted.
    "scales-negative": _config(extra="genome: {scales: [1.0, -0.5]}\n"),
    "init_mean-above-r_max": _config(extra="genome: {r_max: 0.2, init_mean: 0.5}\n"),
    "shard-0KB": _config(shards="0KB"),
    "shard-1B": _config(shards="1B"),
    "shard-not-a-size": _config(shards="big"),
    # Item 10: config and local-file problems.
    "calibration-text-missing": _config(fitness="fitness: {kind: calibration, calibration_text: no/such.txt}\n"),
    "data-dir-missing": _config(fitness="fitness: {tasks: [{name: click, weight: 1}], data_dir: no/such/dir}\n"),
    "port-0": _config(extra="hub: {endpoint: local, local_port: 0}\n"),
    "port-too-big": _config(extra="hub: {endpoint: local, local_port: 70000}\n"),
    "endpoint-no-scheme": _config(extra="hub: {endpoint: '127.0.0.1:8765'}\n"),
    "endpoint-ftp": _config(extra="hub: {endpoint: 'ftp://example.com'}\n"),
    "child-repo-double-dash": _config(child="a/b--c"),
    "child-repo-leading-dot": _config(child="a/.child"),
    "child-repo-dot-git": _config(child="a/child.git"),
    "child-repo-too-long": _config(child="a/" + "x" * 97),
    "space-repo-double-dot": _config(extra="space: {repo: a/b..c}\n"),
    "dashboard-space-repo-dot-git": _config(extra="search: {track_space: a/dash.git}\n"),
    "negative-worker-resources": _config(extra="search: {worker_resources: {GPU: -1}}\n"),
    "father-revision-escapes": _config().replace("{repo: a/father}", "{repo: a/father, revision: ../../x}"),
    "mother-revision-hidden": _config().replace("{repo: a/mother}", "{repo: a/mother, revision: .git}"),
    "push-branch-escapes": _config(shards="5GB, on_existing: {branch: ../main}"),
    # Issue 22 item 11: a ref is someone's pull request (or the Hub's own), never the branch a release commits to.
    "push-branch-pull-request": _config(shards="5GB, on_existing: {branch: refs/pr/1}"),
    "push-branch-full-ref": _config(shards="5GB, on_existing: {branch: refs/heads/main}"),
    # Issue 22 item 9: nesting deep enough to exhaust the YAML parser's recursion, or just unreasonably deep.
    "nested-20000-lists": _config() + "card: {genealogy: {note: " + "[" * 20000 + "]" * 20000 + "}}\n",
    "nested-200-mappings": _config() + "card: {genealogy: " + "{a: " * 200 + "1" + "}" * 200 + "}\n",
    "father-repo-three-parts": _config().replace("{repo: a/father}", "{repo: a/b/father}"),
    "not-yaml": "name: [unclosed\n",
    "key-given-twice": _config(extra="genome: {r_max: 0.3}\ngenome: {r_max: 0.4}\n"),
    "nested-key-given-twice": _config(extra="genome: {r_max: 0.3, r_max: 0.4}\n"),
    "token-in-commit-message": _config().replace("max_shard_size: 5GB", "commit_message: 'with hf_" + "a1B2" * 8 + "'"),
    "token-in-card": _config(extra="card: {genealogy: {note: 'api_" + "Z9y8" * 6 + "'}}\n"),
    "credentials-in-endpoint": _config(extra="hub: {endpoint: 'https://me:secret@hub.example.com'}\n"),
    "unknown-key": _config(extra="serch: {popsize: 4}\n"),
    "local-store-in-the-app": _config(extra=f"hub: {{endpoint: local, local_root: {ROOT / 'space' / 'hub'}}}\n"),
    "local-store-is-the-checkout": _config(extra=f"hub: {{endpoint: local, local_root: {ROOT}}}\n"),
}


def _run(config: Path, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "release", "run", str(config), "--no-progress"],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def _assert_one_line_error(out: subprocess.CompletedProcess, runs: Path) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert not runs.exists() or not list(runs.rglob("stages.json"))
    return lines[0]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_config_is_one_line_and_writes_nothing(tmp_path, case):
    runs = tmp_path / "runs"
    path = tmp_path / "c.yaml"
    path.write_text(BROKEN[case] + ("" if case == "not-yaml" else f"runs_dir: {runs}\n"))
    _assert_one_line_error(_run(path), runs)
    assert not runs.exists()


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(_config().encode() + b"card: {description: \"caf\xe9\"}\n")  # Latin-1
    line = _assert_one_line_error(_run(path), tmp_path / "runs")
    assert "not UTF-8" in line


def test_a_calibration_text_that_is_not_utf8_is_one_line(tmp_path):
    text = tmp_path / "calibration.txt"
    text.write_bytes("Un café au lait.".encode("latin-1"))
    path = tmp_path / "c.yaml"
    path.write_text(_config(fitness=f"fitness: {{kind: calibration, calibration_text: {text}}}\n")
                    + f"runs_dir: {tmp_path / 'runs'}\n")
    line = _assert_one_line_error(_run(path), tmp_path / "runs")
    assert "fitness.calibration_text" in line and "not UTF-8" in line


@pytest.mark.parametrize("runs_dir, name", [(ROOT / "runs", ".."), (ROOT.parent, ROOT.name), (ROOT, "space"),
                                            (ROOT / "space", "x")])
def test_the_projects_own_space_folder_cannot_become_or_hold_a_run(tmp_path, runs_dir, name):
    before = folder_digest(ROOT / "space")
    path = tmp_path / "c.yaml"
    path.write_text(_config(name=f'"{name}"', extra=f"runs_dir: {runs_dir}\nspace: {{repo: a/chat}}\n"))
    line = _assert_one_line_error(_run(path), tmp_path / "runs")
    assert "name" in line or "run folder" in line
    assert folder_digest(ROOT / "space") == before


@pytest.mark.parametrize("error, words", [
    (KeyError("a bug\nover two lines"), "a bug in darwin-release"),
    (OSError(28, "No space left on device"), "a system error"),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), "lower fitness.batch_size"),
])
def test_an_unforeseen_error_is_still_one_line_with_its_traceback_kept(tmp_path, monkeypatch, capsys, error, words):
    """The safety net under every check: one line with a hint, naming a file that holds the traceback."""
    import release.pipeline
    from release.cli import main

    token = "hf_FakeTokenForTestsOnly0123456789abcd"
    monkeypatch.setenv("HF_TOKEN", token)

    def failing(config, opts):
        raise type(error)(*error.args[:-1], f"{error.args[-1]} near {token}")

    monkeypatch.setattr(release.pipeline, "run_release", failing)
    path = tmp_path / "c.yaml"
    path.write_text(_config() + f"runs_dir: {tmp_path / 'runs'}\n")
    assert main(["run", str(path), "--no-progress"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {type(error).__name__}: ") and token not in lines[0]
    assert words in lines[0]
    trace = Path(lines[0].split("traceback is in ")[1].rstrip(")"))
    try:
        text = trace.read_text()
        assert "Traceback" in text and "in failing" in text and token not in text
    finally:
        trace.unlink()


def test_space_serve_refuses_a_port_out_of_range_in_one_line():
    out = subprocess.run([sys.executable, "-m", "release", "space-serve", "configs/default.yaml", "--port", "70000"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "not a port" in out.stderr.splitlines()[-1]


def test_tokens_from_hf_auth_login_and_any_token_shaped_text_are_redacted(tmp_path, monkeypatch, capsys):
    """Issue 22 item 13: not only $HF_TOKEN. `hf auth login` stores tokens in HF_HOME; any other text shaped
    like a Hub token (one copied into an error message, say) is hidden too."""
    import logging

    import release.pipeline
    from release.cli import main
    from release.errors import ReleaseError
    from release.redact import redact

    home = tmp_path / "hf-home"
    home.mkdir()
    active, named = "hf_LoginToken" + "x7" * 12, "org-token-" + "q9" * 10  # the second is not token-shaped
    (home / "token").write_text(active)
    (home / "stored_tokens").write_text(f"[work]\nhf_token = {named}\n\n[active]\nhf_token = {active}\n")
    stray = "hf_" + "AbCd1234" * 4
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_TOKEN", raising=False)

    def failing(config, opts):
        logging.getLogger("release.test").warning("pushing with %s", active)
        raise RuntimeError(f"401 for {active}, {named} and {stray}")

    monkeypatch.setattr(release.pipeline, "run_release", failing)
    path = tmp_path / "c.yaml"
    path.write_text(_config() + f"runs_dir: {tmp_path / 'runs'}\n")
    assert main(["run", str(path), "--no-progress", "-v"]) == 1
    err = capsys.readouterr().err
    line = err.splitlines()[-1]
    trace = Path(line.split("traceback is in ")[1].rstrip(")"))
    try:
        for text in (err, trace.read_text()):
            assert "401 for ***, *** and ***" in text
            assert active not in text and named not in text and stray not in text
        assert redact("hf_hub_download") == "hf_hub_download"  # code names stay readable
    finally:
        trace.unlink()

    def refused(config, opts):
        raise ReleaseError(f"the Hub rejected {named}")

    monkeypatch.setattr(release.pipeline, "run_release", refused)
    assert main(["run", str(path), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "error: the Hub rejected ***"


# Issue 28: checks that need only the config run at load (and so at --plan), not at the stage that used to
# make them (the card after breed, emit and health; the breed stage for a layer map).
LOCAL_PATHS = {
    "card.genealogy.grandfather": _config(extra="card: {genealogy: {grandfather: /tmp/checkpoints/gemma}}\n"),
    "card.citation": _config(extra=f"card: {{citation: 'see {Path.home()}/notes'}}\n"),
    "card.tags[0]": _config(extra="card: {tags: [/tmp/x]}\n"),
}


@pytest.mark.parametrize("key", sorted(LOCAL_PATHS))
def test_a_local_path_in_a_card_field_fails_plan_in_one_line(tmp_path, key):
    path = tmp_path / "c.yaml"
    path.write_text(LOCAL_PATHS[key] + f"runs_dir: {tmp_path / 'runs'}\n")
    out = subprocess.run([sys.executable, "-m", "release", "run", str(path), "--plan"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    line = _assert_one_line_error(out, tmp_path / "runs")
    assert key in line and "local path" in line  # the value itself is not repeated:
    assert "checkpoints" not in line and "notes" not in line and "/tmp/x" not in line


def _calibration(tmp_path, text: str, suffix: str, extra: str) -> str:
    data = tmp_path / f"calibration{suffix}"
    data.write_text(text)
    return _config(fitness=f"fitness: {{kind: calibration, calibration_text: {data}, calibration: {{{extra}}}}}\n")


@pytest.mark.parametrize("config, words", [
    (lambda tmp: _config(extra="breed: {method: linear}\ngenome: {layer_map: [0, 1, 2, 3, 4, 5]}\n"),
     "genome.layer_map is for ffn_blend"),
    (lambda tmp: _calibration(tmp, "a => b\nno answer here\n", ".txt", "separator: '=>'"),
     "line 2 has no separator"),
    (lambda tmp: _calibration(tmp, '{"prompt": "a"}\n', ".jsonl", ""), "line 1 is not a JSON object"),
    (lambda tmp: _calibration(tmp, '{"prompt": "a", "answer": "b"}\n', ".jsonl", "separator: '=>'"),
     "drop the separator"),
])
def test_config_only_checks_run_at_load(tmp_path, config, words):
    path = tmp_path / "c.yaml"
    path.write_text(config(tmp_path) + f"runs_dir: {tmp_path / 'runs'}\n")
    assert words in _assert_one_line_error(_run(path), tmp_path / "runs")
