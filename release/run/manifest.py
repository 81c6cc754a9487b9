"""What a stage vouches for: the size and sha256 of every file it wrote into the run folder.

A stage's record keeps this manifest; before a later run reuses the stage's outputs (to skip it, to
check the child's health, to push it), the files are checked against it. A damaged or changed file
then means the stage is redone, never that its bytes are trusted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from release.errors import ReleaseError


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _files_under(path: Path) -> list[Path]:
    # Links are not ours to vouch for: a parent view links into the HF cache, which pull checks itself.
    if path.is_symlink():
        return []
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return [path] if path.is_file() else []


def file_manifest(paths: list[Path], within: Path) -> dict[str, dict]:
    """{str(path): {"size", "sha256"}} for every regular file in `paths` (folders walked) inside `within`."""
    within = within.resolve()
    manifest = {}
    for path in paths:
        for f in _files_under(Path(path)):
            if f.resolve().is_relative_to(within):
                manifest[str(f)] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    return manifest


def manifest_problem(manifest: dict[str, dict]) -> str | None:
    """The first vouched file that is missing or no longer holds what was written, as a short phrase."""
    for name, want in sorted(manifest.items()):
        path = Path(name)
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["size"]:  # cheap, and the usual damage (a truncated or half-copied file)
            return f"{name} holds {size} bytes, {want['size']} were written"
        if _sha256(path) != want["sha256"]:
            return f"{name} no longer holds the bytes that were written (sha256 differs)"
    return None


def unvouched_files(folder: Path, manifests: list[dict[str, dict]]) -> list[str]:
    """Files in `folder` that none of `manifests` vouches for."""
    known = set().union(*manifests) if manifests else set()
    return [str(p) for p in sorted(Path(folder).rglob("*")) if (p.is_file() or p.is_symlink()) and str(p) not in known]


def vouched_folder(folder: Path, manifests: list[dict[str, dict]], stages: str) -> dict[str, str]:
    """{relative name: sha256} of `folder`, which must hold exactly the files `manifests` vouch for, at their
    sizes (their bytes were checked when the stages that wrote them were skipped or run)."""
    vouched = {name: want for m in manifests for name, want in m.items() if Path(name).is_relative_to(folder)}
    for name in unvouched_files(folder, [vouched]):
        raise ReleaseError(f"{name} was not written by {stages}: remove it (or run with --force emit to write the "
                           "child again) and run again; nothing was pushed")
    for name, want in sorted(vouched.items()):
        path = Path(name)
        if not path.is_file() or path.stat().st_size != want["size"]:
            raise ReleaseError(f"{name} changed after it was checked: run again (the stage that wrote it is "
                               "redone); nothing was pushed")
    return {str(Path(name).relative_to(folder)): want["sha256"] for name, want in sorted(vouched.items())}
