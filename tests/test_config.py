"""The release config: shipped configs validate, broken ones fail in one line naming the key."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from release.config import ReleaseConfig, load_config
from release.errors import ReleaseError

ROOT = Path(__file__).resolve().parents[1]
BASE = """name: t
father: {repo: a/father}
mother: {repo: a/mother}
child: {repo: a/child}
fitness: {kind: calibration}
"""


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env)


def test_shipped_configs_validate():
    default = load_config(ROOT / "configs/default.yaml")
    assert default.hub.endpoint == "local" and default.tiny_parents
    genesis = load_config(ROOT / "configs/darwin-4b-genesis.yaml")
    assert genesis.father.repo == "FINAL-Bench/Darwin-4B-David" and genesis.mother.repo == "Qwen/Qwen3.5-4B"
    assert genesis.genome.frozen == [15, 16, 22, 23, 24, 25]
    assert {t.name: t.weight for t in genesis.fitness.tasks} == {"click": 0.6, "musr": 0.4}
    assert genesis.child.repo == "FINAL-Bench/Darwin-4B-Genesis"
    assert (genesis.search.device, genesis.search.dtype) == ("cuda", "bfloat16")


@pytest.mark.parametrize("extra, message", [
    ("genome: {r_max: big}", "genome.r_max: Input should be a valid number"),
    ("genome: {frozen: [-1]}", "genome.frozen"),
    ("serch: {popsize: 4}", "serch: unknown key"),
    ("search: {popsize: 1}", "search.popsize"),
    ("search: {device: tpu}", "search.device"),
])
def test_broken_config_fails_in_one_line_naming_the_key(tmp_path, extra, message):
    path = tmp_path / "c.yaml"
    path.write_text(BASE + extra + "\n")
    with pytest.raises(ReleaseError) as e:
        load_config(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_not_yaml_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ReleaseError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ReleaseError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_cli_plans_the_genesis_release_offline():
    """Offline, the YAML checks still run; the parents are reported unchecked (exit 1), never valid."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    out = _cli("run", "configs/darwin-4b-genesis.yaml", "--dry-run", "--plan", env={**os.environ, "HF_ENDPOINT": closed})
    assert out.returncode == 1, out.stderr
    assert "configs/darwin-4b-genesis.yaml: valid" in out.stdout
    assert "parents: NOT CHECKED, the Hub is unreachable" in out.stdout and "parents: valid" not in out.stdout
    for stage in ("pull", "mri", "breed", "emit", "health", "evaluate", "card", "push", "space", "verify"):
        assert f"  {stage}" in out.stdout
    assert "push  (skipped: --dry-run)" in out.stdout


def test_cli_broken_config_is_one_line_with_exit_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "genome: {r_max: 7}\n")
    out = _cli("run", str(path), "--plan")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "genome.r_max" in out.stderr


@pytest.mark.parametrize("text", [
    "{not json", b"\xff\xfe{}", "[]", '{"pull": "3f2a9c"}', '{"pull": {"key": "3f2a9c"}}',
    '{"pull": {"key": 1, "result": {}}}', '{"pull": {"key": "k", "result": {}, "outputs": "runs/x"}}',
])
def test_a_corrupt_stage_record_is_a_one_line_error(tmp_path, text):
    from release.run.stages import StageBook

    path = tmp_path / "stages.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ReleaseError, match="stages.json is corrupt") as e:
        StageBook(tmp_path)
    assert "\n" not in str(e.value)


REPO_IDS = ["a/b", "FINAL-Bench/Darwin-4B-Genesis", "Qwen/Qwen3.5-4B", "a_b/c.d-e", "x/" + "y" * 96,
            "a/b--c", "a/b..c", "a/.b", "a/b.", "a/-b", "a/b-", "a/b.git", "a/" + "y" * 97, "a/b c", "a//b",
            "a/b/c", "/b", "a/", "ab", "a/b\n", "ä/ö"]


@pytest.mark.parametrize("repo", REPO_IDS)
def test_repo_ids_follow_the_hubs_own_rule(repo):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
        hub_accepts = "/" in repo
    except HFValidationError:
        hub_accepts = False
    try:
        ours = ReleaseConfig.model_validate({**yaml.safe_load(BASE), "child": {"repo": repo}}).child.repo == repo
    except ValidationError:
        ours = False
    assert ours == hub_accepts, repo


def test_loading_a_config_leaves_hf_endpoint_unread():
    # huggingface_hub reads HF_ENDPOINT once at import: the CLI sets it (embedded endpoint) after loading.
    code = ("import sys; from release.config import load_config; load_config('configs/default.yaml'); "
            "bad = [m for m in sys.modules if m.startswith(('huggingface_hub', 'transformers'))]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def _sections(model, seen=None) -> set:
    """Every pydantic model a config is built from (sections, sub-sections, list items)."""
    import typing

    from pydantic import BaseModel

    seen = set() if seen is None else seen
    seen.add(model)
    stack = [f.annotation for f in model.model_fields.values()]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t not in seen:
                _sections(t, seen)
        else:
            stack.extend(typing.get_args(t))
    return seen


def test_every_config_section_refuses_non_finite_numbers():
    sections = _sections(ReleaseConfig)
    assert {"GenomeSpec", "SearchSpec", "TaskSpec", "FitnessSpec"} <= {m.__name__ for m in sections}
    loose = [m.__name__ for m in sections if m.model_config.get("allow_inf_nan") is not False]
    assert not loose, f"derive these from _Strict, or NaN/inf get in: {loose}"
