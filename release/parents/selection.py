"""Which files of a parent repo a release downloads, and a folder view of what was downloaded.

Needed: every tensor of the parent's text decoder (the child keeps the father's whole text decoder; the
final evaluation scores both parents as text models) and so every tensor the child reads, plus configs,
tokenizer and chat template. Shards that hold none of these (vision and audio towers, `mtp.*`) are skipped.
Whole shards are fetched, never byte ranges: each file is then checked against the sha256 the Hub
records for it, and the cache stays the Hub's own (bench/bench_pull.py measures the difference).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path

from release.parents.childmap import ChildTensor
from release.parents.metadata import INDEX, ParentMeta
from release.run.files import write_atomic

TEXT_PREFIXES = ("model.language_model.", "lm_head.")
# Small files breeding needs besides weights: configs, tokenizer, chat template.
SMALL_PATTERNS = ("*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken")


@dataclass(frozen=True)
class PullSelection:
    files: list[str]  # repo files to download
    fetch_bytes: int
    repo_bytes: int
    skipped: list[str]  # weight shards left out
    revision: str | None = None  # the commit the metadata was read at: pull exactly that one


def select_files(parent: ParentMeta, child: dict[str, ChildTensor]) -> PullSelection:
    needed_keys = {k for k in parent.tensors if k.startswith(TEXT_PREFIXES)}
    needed_keys |= {t.key for t in child.values() if t.role == parent.role}
    shards = {parent.tensors[k].file for k in needed_keys}
    all_shards = {info.file for info in parent.tensors.values()}
    small = [f for f in parent.files if not f.endswith(".safetensors")
             and any(fnmatch.fnmatch(f, p) for p in SMALL_PATTERNS)]
    files = sorted(set(small) | shards)
    return PullSelection(files=files, fetch_bytes=sum(parent.files.get(f, 0) for f in files),
                         repo_bytes=sum(parent.files.values()), skipped=sorted(all_shards - shards),
                         revision=parent.revision)


def write_view(snapshot: Path, out: Path) -> Path:
    """`out`: links to the snapshot's files, and an index naming only the shards that are there.

    transformers opens every shard an index names; after a pull that skipped shards, loading the
    snapshot itself would fail on the first absent one.
    """
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_symlink() or old.is_file():
            old.unlink()
    for path in sorted(snapshot.iterdir()):
        if path.is_file() and path.name != INDEX:
            os.symlink(path.resolve(), out / path.name)
    index_path = snapshot / INDEX
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        index["weight_map"] = {k: f for k, f in index["weight_map"].items() if (snapshot / f).is_file()}
        write_atomic(out / INDEX, json.dumps(index, indent=2) + "\n")
    return out
