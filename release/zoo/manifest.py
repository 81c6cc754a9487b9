"""The published zoo's files and their sha256, in `sha256sum -c` form (`release/zoo/SHA256SUMS`).

Covers every file of the trained models and of the task folder, so a check of the manifest vouches
for exactly what the tests, the embedded defaults and the method benchmark read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from release.run.files import write_atomic

ZOO_DIR = Path(__file__).resolve().parent
MANIFEST = "SHA256SUMS"
COVERED = ("models", "tasks")  # folders under the zoo root


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digests(root: Path = ZOO_DIR) -> dict[str, str]:
    """Relative path -> sha256 of every file under the covered folders (caches and temp folders left out)."""
    out = {}
    for folder in COVERED:
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and not any(p.endswith(".tmp") for p in rel.parts):
                out[rel.as_posix()] = sha256(path)
    return out


def write_manifest(root: Path = ZOO_DIR) -> Path:
    lines = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(digests(root).items()))
    return write_atomic(root / MANIFEST, lines)


def read_manifest(root: Path = ZOO_DIR) -> dict[str, str]:
    entries = {}
    for line in (root / MANIFEST).read_text().splitlines():
        digest, rel = line.split("  ", 1)
        entries[rel] = digest
    return entries


def differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """One line per file missing, extra or changed; empty when the two agree."""
    lines = [f"missing: {rel}" for rel in sorted(expected.keys() - actual.keys())]
    lines += [f"not in the manifest: {rel}" for rel in sorted(actual.keys() - expected.keys())]
    lines += [f"changed: {rel}" for rel in sorted(expected.keys() & actual.keys()) if expected[rel] != actual[rel]]
    return lines
