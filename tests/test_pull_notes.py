"""Pull as a user sees it: a moved-on branch is reported, and --no-progress silences the Hub client's bars."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import os
import subprocess
import sys
from pathlib import Path

import yaml

from release.config import ReleaseConfig
from release.hub.client import Hub
from release.pipeline import RunOptions, run_release

ROOT = Path(__file__).resolve().parents[1]


def _parents(tiny_parents) -> tuple[str, str]:
    # Real checkpoints: the pull checks the parents' configs and headers before it downloads.
    hub = Hub(token=TOKEN)
    repos = []
    for role in ("father", "mother"):
        repos.append(repo_name(role))
        hub.push_folder(getattr(tiny_parents, role), repos[-1])
    return repos[0], repos[1]


def _raw(tmp_path: Path, local_hub, father: str, mother: str) -> dict:
    return dict(name="notes", father={"repo": father}, mother={"repo": mother}, child={"repo": repo_name("child")},
                fitness={"kind": "calibration"}, runs_dir=str(tmp_path / "runs"), hub={"endpoint": local_hub.url})


def test_a_branch_that_moved_on_since_the_pull_is_reported_with_how_to_take_it(tmp_path, local_hub, capsys,
                                                                              tiny_parents):
    father, mother = _parents(tiny_parents)
    config = ReleaseConfig.model_validate(_raw(tmp_path, local_hub, father, mother))
    first = run_release(config, RunOptions(only=("pull",), progress=False))["pull"]
    Hub(token=TOKEN).api.upload_file(path_or_fileobj=b'{"notes": 2}', path_in_repo="notes.json", repo_id=father)
    capsys.readouterr()
    again = run_release(config, RunOptions(only=("pull",), progress=False))
    out = capsys.readouterr().out
    assert again["ran"] == [] and again["pull"]["father"]["revision"] == first["father"]["revision"]
    assert f"father {father}@main has moved on" in out and "--force pull" in out and "mother" not in out
    taken = run_release(config, RunOptions(force={"pull"}, only=("pull",), progress=False))["pull"]
    assert taken["father"]["revision"] == Hub().head(father) != first["father"]["revision"]


def test_no_progress_also_silences_the_hub_clients_bars(tmp_path, local_hub, tiny_parents):
    father, mother = _parents(tiny_parents)
    config = tmp_path / "notes.yaml"
    config.write_text(yaml.safe_dump(_raw(tmp_path, local_hub, father, mother)))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf")

    def pull(*flags):
        out = subprocess.run([sys.executable, "-m", "release", "pull", str(config), "--force", "pull", *flags],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stderr

    assert "it/s]" in pull("--progress")  # the client draws bars when asked (the control)
    assert "it/s]" not in pull("--no-progress")
