"""What the search's result depends on, for its checkpoint key and the breed stage's key.

Only what changes which candidates are scored and how: an edit elsewhere (a task that only the final
evaluation reads, the held-out sizes of a benchmark, a card field) keeps a finished search, and resumes an
unfinished one.
"""

from __future__ import annotations

import hashlib

from release.config import ReleaseConfig


def fitness_key(config: ReleaseConfig) -> dict:
    """The fitness part of the search key.

    Benchmark: the fitness section as before the calibration settings existed (older checkpoints still
    resume). Calibration: the text's content (not its path), how it is cut and scored, and the seed-drawn
    held-out share; never the tasks, which only the final evaluation reads."""
    f = config.fitness
    if f.kind == "benchmark":
        return {k: v for k, v in f.search_key().items() if k != "calibration"}
    text = f.calibration_text
    return {"kind": f.kind, "batch_size": f.batch_size, "calibration": f.calibration.model_dump(),
            "text_sha256": text and hashlib.sha256(text.read_bytes()).hexdigest(),
            "jsonl": bool(text and text.suffix == ".jsonl")}
