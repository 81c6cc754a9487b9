"""Leftovers of a run killed mid-write are removed by the next run, and the Space folder is as readable as
any other (0755 folders, 0644 files), not private like a temp folder (issue 17, smaller things)."""

import stat
from pathlib import Path

import pytest

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.pipeline import RunOptions, run_release
from release.hub.space import APP_DIR, prepare_space_folder
from release.run.stages import folder_digest


def _config(tmp_path, **extra) -> ReleaseConfig:
    return ReleaseConfig.model_validate({
        "name": "orphans", "runs_dir": str(tmp_path / "runs"), "father": {"repo": "a/father"},
        "mother": {"repo": "a/mother"}, "child": {"repo": "a/child"}, "space": {"repo": "a/chat"},
        "fitness": {"kind": "calibration"}, **extra})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_space_folder_is_world_readable_and_its_sources_cannot_be_replaced(tmp_path):
    config = _config(tmp_path)
    folder = prepare_space_folder(config, config.run_dir / "space")
    assert _mode(folder) == 0o755
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    assert all(_mode(p) & 0o644 == 0o644 for p in folder.iterdir())
    assert [p.name for p in config.run_dir.iterdir()] == ["space"]  # no staging folder left behind
    before = folder_digest(APP_DIR)
    with pytest.raises(ReleaseError, match="own files"):
        prepare_space_folder(config, APP_DIR)
    assert folder_digest(APP_DIR) == before


def test_a_run_removes_what_a_killed_run_left_half_written(tmp_path):
    config = _config(tmp_path, hub={"endpoint": "http://127.0.0.1:9"})  # nothing listens: pull fails at once
    run = config.run_dir
    orphans = [run / ".stages.json.k3j4h5g6.tmp", run / ".space.ab12cd34", run / ".space.x1y2z3w4.tmp.old",
               run / ".space.q9w8e7r6.tmp", run / "breed" / ".checkpoint.pkl.a1b2c3.tmp",
               run / "child" / ".README.md.zz11yy22.tmp"]
    kept = [run / "breed" / "candidates.jsonl", run / "child" / "README.md", run / "space" / "app.py"]
    for path in orphans + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.startswith(".space."):
            path.mkdir()
            (path / "app.py").write_text("half written")
        else:
            path.write_text("x")
    with pytest.raises(ReleaseError):  # the unreachable endpoint: what matters is what it cleaned first
        run_release(config, RunOptions(progress=False))
    assert [p for p in orphans if p.exists()] == []
    assert all(p.read_text() == "x" for p in kept)
