"""A small multiple-choice task the project generates itself, for the embedded default and smoke runs.

Deterministic from a seed; four answer letters per question, so a candidate costs one short forward
pass per question (like CLIcK). The questions have learnable answers (arithmetic, next letter,
opposites, capitals), written as a jsonl file plus an lm-eval task YAML at run time, so lm-eval's own
multiple-choice machinery scores it exactly like the real benchmarks.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from release.run.files import write_atomic, write_yaml

TASK_NAME = "darwin_synthetic"
LETTERS = ["A", "B", "C", "D"]

_OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("fast", "slow"),
              ("old", "new"), ("open", "closed"), ("full", "empty"), ("light", "dark"), ("early", "late"),
              ("happy", "sad"), ("left", "right"), ("high", "low"), ("wet", "dry"), ("hard", "soft")]
_CAPITALS = [("Korea", "Seoul"), ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"),
             ("Spain", "Madrid"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"),
             ("Canada", "Ottawa"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Chile", "Santiago")]


def _addition(rng: random.Random) -> tuple[str, str, list[str]]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    wrong = rng.sample([n for n in range(2, 19) if n != a + b], 3)
    return f"What is {a} plus {b}?", str(a + b), [str(n) for n in wrong]


def _next_letter(rng: random.Random) -> tuple[str, str, list[str]]:
    i = rng.randrange(0, 25)
    letters = string.ascii_lowercase
    wrong = rng.sample([c for c in letters if c != letters[i + 1]], 3)
    return f"Which letter comes right after '{letters[i]}'?", letters[i + 1], wrong


def _opposite(rng: random.Random) -> tuple[str, str, list[str]]:
    word, answer = rng.choice(_OPPOSITES)
    wrong = rng.sample([o for _, o in _OPPOSITES if o != answer], 3)
    return f"What is the opposite of '{word}'?", answer, wrong


def _capital(rng: random.Random) -> tuple[str, str, list[str]]:
    country, answer = rng.choice(_CAPITALS)
    wrong = rng.sample([c for _, c in _CAPITALS if c != answer], 3)
    return f"What is the capital of {country}?", answer, wrong


_FAMILIES = [_addition, _next_letter, _opposite, _capital]


def make_items(n: int, seed: int) -> list[dict]:
    """`n` questions, families in turn, the correct option at a seeded random position."""
    rng = random.Random(f"darwin-synthetic/{seed}")  # own generator: never touches the global RNG
    items = []
    for i in range(n):
        stem, answer, wrong = _FAMILIES[i % len(_FAMILIES)](rng)
        options = wrong[:]
        target = rng.randrange(4)
        options.insert(target, answer)
        lines = [f"Question: {stem}"] + [f"{letter}. {opt}" for letter, opt in zip(LETTERS, options)]
        items.append({"id": f"synthetic_{i}", "question": "\n".join(lines) + "\nAnswer:",
                      "options": options, "answer": target})
    return items


def write_synthetic_task(task_dir: Path, data_dir: Path, n: int, seed: int) -> Path:
    """Write `n` items to data_dir/synthetic.jsonl and the task YAML to task_dir; return the YAML path."""
    data = data_dir / "synthetic.jsonl"
    write_atomic(data, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in make_items(n, seed)))
    config = {
        "task": TASK_NAME,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": LETTERS,
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "seed": seed},
    }
    return write_yaml(task_dir / f"{TASK_NAME}.yaml", config)
