"""The probe prompt sets shipped with the tool (`probe_prompts.yaml`: domains, prompts and their license)."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

PROMPTS_FILE = Path(__file__).with_name("probe_prompts.yaml")


def probe_prompts(per_domain: int | None = None, seed: int = 0) -> dict[str, list[str]]:
    """domain -> prompts; with `per_domain`, a seeded subset of that many prompts per domain."""
    data = yaml.safe_load(PROMPTS_FILE.read_text(encoding="utf-8"))
    sets = {d: list(ps) for d, ps in data["domains"].items()}
    if per_domain is not None:
        rng = random.Random(seed)
        sets = {d: sorted(rng.sample(ps, min(per_domain, len(ps))), key=ps.index) for d, ps in sets.items()}
    return sets


def prompts_license() -> str:
    return yaml.safe_load(PROMPTS_FILE.read_text(encoding="utf-8"))["license"]
