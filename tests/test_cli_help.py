"""A CLI that explains itself: per-stage help, --force's choices, examples, `init`, `schema`, the config
reference page, and typo'd keys that name the key meant."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from release.cli import main
from release.ui.schema import DOCS_PAGE, config_schema, reference_markdown
from release.run.stages import STAGE_HELP, STAGES
from tests.cli import ROOT, isolated_env

SHIPPED = sorted(ROOT.glob("configs/*.yaml")) + sorted(ROOT.glob("release/ui/starters/*.yaml"))


def _help(capsys, *args) -> str:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_each_stage_subcommand_says_what_its_stage_does_and_force_lists_the_stages(capsys):
    helps = {stage: _help(capsys, stage) for stage in STAGES}
    for stage, text in helps.items():
        assert " ".join(STAGE_HELP[stage].split()) in " ".join(text.split())
        assert "pull, mri, breed, emit, health, evaluate, card, push, space, verify, or all" in " ".join(text.split())
    assert len(set(helps.values())) == len(STAGES)
    top = _help(capsys)
    assert "examples:" in top and "darwin-release init" in top and "--plan" in top and DOCS_PAGE in top
    with pytest.raises(SystemExit) as done:
        main(["run", "configs/default.yaml", "--force", "bred"])
    assert done.value.code == 2
    assert "invalid choice: 'bred'" in capsys.readouterr().err


@pytest.mark.parametrize("typo, meant", [
    ({"serach": {}}, "serach: unknown key (did you mean 'search'?)"),
    ({"space": {"repo": "a/b", "hardwre": "cpu-basic"}}, "space.hardwre: unknown key (did you mean 'hardware'?)"),
    ({"fitness": {"kind": "benchmark", "tasks": [{"name": "synthetic", "weigth": 1}]}},
     "fitness.tasks.0.weigth: unknown key (did you mean 'weight'?)"),
    ({"card": {"licence": "mit"}}, "card.licence: unknown key (did you mean 'license'?)"),
])
def test_a_typod_key_names_the_key_meant(tmp_path, capsys, typo, meant):
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw.update(typo)
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--plan"]) == 2
    err = capsys.readouterr().err
    assert meant in err and DOCS_PAGE in err and err.count("\n") == 1


def test_schema_prints_the_json_schema_that_every_shipped_config_passes(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert SHIPPED and len(SHIPPED) >= 7
    for path in SHIPPED:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["search"]["popsize"] = "six"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, schema)
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw["serach"] = {}
    with pytest.raises(jsonschema.ValidationError):  # unknown keys too, as load_config
        jsonschema.validate(raw, schema)
    # A key's comment in release/config.py is its description, for editors and the reference page.
    assert "tiny parents" in schema["properties"]["tiny_parents"]["description"]


def test_the_config_reference_page_is_in_sync_with_the_models():
    page = ROOT / DOCS_PAGE
    assert page.read_text(encoding="utf-8") == reference_markdown(), (
        f"{DOCS_PAGE} is out of date: run  python -m release schema --markdown > {DOCS_PAGE}")
    schema = config_schema()
    for name, model in schema["$defs"].items():  # every key of every section is on the page
        for key in model.get("properties", {}):
            assert f"| `{key}` |" in page.read_text(encoding="utf-8"), (name, key)


@pytest.mark.parametrize("flags", [[], ["--same-arch"]])
def test_init_writes_a_starter_that_passes_the_plan_offline_with_only_the_parents_unchecked(tmp_path, capsys, flags):
    path = tmp_path / "mine.yaml"
    assert main(["init", str(path), *flags]) == 0
    assert f"darwin-release run {path} --plan" in capsys.readouterr().out
    text = path.read_text()
    assert text.count("\n#") + text.count("  #") > 10  # commented
    assert main(["init", str(path)]) == 2 and "exists" in capsys.readouterr().err  # never overwritten silently
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    out = subprocess.run([sys.executable, "-m", "release", "run", str(path), "--plan"], capture_output=True, text=True,
                         env=isolated_env(tmp_path) | {"HF_ENDPOINT": closed}, cwd=tmp_path, timeout=120)
    assert out.returncode == 1 and out.stderr == "", out.stderr  # 1: something could not be checked
    assert f"config {path}: valid (" in out.stdout and "space.hardware, card.license)" in out.stdout
    unchecked = [line for line in out.stdout.splitlines() if "NOT CHECKED" in line or "not checked" in line]
    assert len(unchecked) == 1 and unchecked[0].startswith("parents: NOT CHECKED, the Hub is unreachable")
    assert "warning" not in out.stdout and "error" not in out.stdout


def test_a_missing_required_key_points_to_the_reference(tmp_path, capsys):
    path = tmp_path / "short.yaml"
    path.write_text("name: x\nfather: {repo: a/b}\nmother: {repo: a/c}\nfitness: {kind: calibration}\n")
    assert main(["run", str(path), "--plan"]) == 2
    assert "child: a required key is missing (every key is in docs/config.md)" in capsys.readouterr().err
