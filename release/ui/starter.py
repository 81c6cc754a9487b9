"""`darwin-release init`: a commented starter config, to edit and then check with `--plan`."""

from __future__ import annotations

from pathlib import Path

from release.errors import ReleaseError
from release.run.files import write_atomic

STARTERS = Path(__file__).parent / "starters"


def write_starter(path: str | Path, same_arch: bool = False, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise ReleaseError(f"{path} exists: give another path, or --force to overwrite it")
    if not path.parent.is_dir():
        raise ReleaseError(f"{path.parent} is not a folder: create it first, or give another path")
    text = (STARTERS / ("same-arch.yaml" if same_arch else "cross-arch.yaml")).read_text(encoding="utf-8")
    write_atomic(path, text.replace("THIS_FILE", str(path)))
    return path
