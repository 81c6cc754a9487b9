"""Atomic writes: a reader never sees half a file or half a folder, and a crash never leaves one."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` to write to; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; what we write is published or shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: dict) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_yaml(path: str | Path, data: dict) -> Path:
    return write_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@contextmanager
def staging_folder(out_dir: str | Path) -> Iterator[Path]:
    """A new folder beside `out_dir` to build in; on success it replaces `out_dir` whole, on failure it is removed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; what we build is published or shared
        yield staging
        swap_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# What a killed atomic write leaves behind: `.NAME.XXXX.tmp` (files and staging folders), their `.old`
# copies in swap_folder, and the `.space.XXXXXXXX` staging folders of older versions.
_ORPHAN = re.compile(r"\..+\.tmp(\.old)?|\.space\.[a-z0-9_]{8}(\.old)?")


def remove_orphans(folder: str | Path) -> list[Path]:
    """Remove the leftovers of interrupted atomic writes under `folder`; only safe while no writer runs
    (the pipeline holds the run lock)."""
    found = sorted((p for p in Path(folder).rglob(".*") if _ORPHAN.fullmatch(p.name)), key=lambda p: len(p.parts))
    removed = []
    for path in found:
        if any(parent in removed for parent in path.parents):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def swap_folder(staging: Path, out_dir: Path) -> None:
    """Replace `out_dir` by the complete folder `staging`; readers see the old folder or the new one."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = staging.with_name(staging.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
