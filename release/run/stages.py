"""Stage bookkeeping for a run folder: skip what is done and unchanged, redo what is forced or stale.

Each stage records, in `runs/<name>/stages.json`, a key derived from its inputs (config sections and the
results of the stages it reads), its result, and the size and sha256 of every file it wrote into the run
folder (`files`). A rerun skips a stage whose key is unchanged and whose outputs still hold exactly those
bytes; a damaged or changed output makes the stage run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from release.errors import ReleaseError
from release.run.files import write_json
from release.run.manifest import file_manifest, manifest_problem
from release.run.records import Record

log = logging.getLogger(__name__)

STAGES = ("pull", "mri", "breed", "emit", "health", "evaluate", "card", "push", "space", "verify")
HUB_STAGES = ("push", "space", "verify")  # the stages that write to the Hub (--dry-run skips them)
# What each stage does, in a few words: its subcommand's help, and its line in a run's output.
STAGE_HELP = {
    "pull": "download the parents (only the files the release reads)",
    "mri": "diagnose the parents layer by layer (Darwin MRI: weight statistics and probe activations)",
    "breed": "search the genome with CMA-ES on the live model",
    "emit": "write the child checkpoint from the best genome",
    "health": "compare the child with both parents layer by layer",
    "evaluate": "score child, father and mother on held-out items",
    "card": "render the model card",
    "push": "push the child to the Hub",
    "space": "deploy the Gradio Space that chats with the child",
    "verify": "load the pushed child back from the Hub and check it generates",
}


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder_digest(folder: Path) -> str:
    """Content digest of a folder (names + sha256 of bytes), for keys of stages that read it."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:16]


def snapshot_digest(folder: Path) -> str:
    """Content digest of a pulled Hub snapshot without reading its bytes: the HF cache links each file to
    a blob named by its ETag (sha256 for LFS files, git sha1 otherwise). Other folders are hashed."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files or not all(p.is_symlink() for p in files):
        return folder_digest(folder)
    return digest([[str(p.relative_to(folder)), os.readlink(p).rsplit("/", 1)[-1]] for p in files])


def _well_formed(records) -> bool:
    """The shape `StageBook.run` writes: {stage: {"key": str, "result": {...}, "outputs": [str, ...]}}."""
    return isinstance(records, dict) and all(
        isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("result"), dict)
        and isinstance(rec.get("outputs", []), list) and all(isinstance(p, str) for p in rec.get("outputs", []))
        and isinstance(rec.get("files", {}), dict)
        and all(isinstance(f, dict) and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)
                for f in rec.get("files", {}).values())
        for rec in records.values())


class StageBook:
    def __init__(self, run_dir: Path, force: set[str] = frozenset(),
                 announce: Callable[[str, bool], None] | None = None):
        self.run_dir = run_dir
        self.path = run_dir / "stages.json"
        self.force = set(force)
        self.announce = announce or (lambda stage, up_to_date: None)  # (stage, up to date?) before each
        try:
            self.records: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except ValueError:  # not JSON, or not UTF-8
            self.records = None
        if not _well_formed(self.records):
            raise ReleaseError(f"{self.path} is corrupt or from another version: delete it and run again (every "
                               "stage is redone; an interrupted search still resumes from its checkpoint)")
        self.ran: list[str] = []

    def result(self, stage: str, record: type[Record] | None = None):
        stored = self.records[stage]["result"]
        return stored if record is None else record.from_json(stored)

    def files(self, stage: str) -> dict[str, dict]:
        """What the stage vouches for: {path: {"size", "sha256"}} of the files it wrote into the run folder."""
        return self.records.get(stage, {}).get("files", {})

    def done(self, stage: str, key: str, still_valid: Callable[[Any], bool] | None = None,
             record: type[Record] | None = None) -> bool:
        rec = self.records.get(stage)
        if not (stage not in self.force and rec is not None and rec["key"] == key
                and all(Path(p).exists() for p in rec.get("outputs", []))):
            return False
        damage = manifest_problem(rec.get("files", {}))  # records from before manifests vouch for nothing
        if damage:
            log.warning("%s: %s since it was written; running %s again", stage, damage, stage)
            return False
        return still_valid is None or still_valid(self.result(stage, record))

    def run(self, stage: str, key_parts: Any, fn: Callable[[], tuple[Any, list[Path]]],
            still_valid: Callable[[Any], bool] | None = None, record: type[Record] | None = None):
        """Run `fn` unless stage is done with the same inputs; `fn` returns (result, output paths).

        The result is a `record` (stored as its JSON) or, without one, a plain dict. `still_valid(result)`
        checks what a result points to outside the run folder (e.g. that a pushed commit is still the
        repo's head) before a stage is skipped.
        """
        key = digest(key_parts)
        if self.done(stage, key, still_valid, record):
            log.info("%s: up to date, skipped", stage)
            self.announce(stage, True)
            return self.result(stage, record)
        self.announce(stage, False)
        t0 = time.monotonic()
        try:
            result, outputs = fn()
        except BaseException:
            # A stage that was redone and failed is not done: forget its old result (e.g. a failed
            # `--force verify` must not leave the earlier pass standing).
            if self.records.pop(stage, None) is not None:
                self._save()
            raise
        stored = result.to_json() if isinstance(result, Record) else result
        self.records[stage] = {"key": key, "result": stored, "outputs": [str(p) for p in outputs],
                               "files": file_manifest(outputs, within=self.run_dir),
                               "seconds": round(time.monotonic() - t0, 2)}
        self._save()
        self.ran.append(stage)
        return result

    def _save(self) -> None:
        write_json(self.path, self.records)
