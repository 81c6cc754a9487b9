"""The zoo's skills as standard lm-eval multiple-choice tasks: `release/zoo/tasks/`.

One YAML per skill (`zoo_lang_a`, `zoo_lang_b`, `zoo_base`), one JSONL of its `eval` items (never its
training items), and `zoo_data.py`, whose `load` lm-eval calls through `custom_dataset: !function` so
the records are read relative to the task folder from any working directory (a `data_files` path in
a YAML is resolved against the caller's cwd). `lm_eval --include_path release/zoo/tasks --tasks
zoo_lang_a` runs one as any other task; the project's subset logic draws its search and held-out items
from the single `test` split.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from release.run.files import write_atomic, write_yaml
from release.zoo import skills

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
TASK_NAMES = {skill: f"zoo_{skill}" for skill in skills.SKILLS}
DATASET_ID = "darwin-release/zoo"  # named on cards; the records ship in the task folder


def records(skill: str, seed: int) -> list[dict]:
    """The skill's eval items, the gold option at a seeded position (chance is 0.25 for any scorer)."""
    rng = random.Random(f"zoo/options/{skill}/{seed}")
    out = []
    for i, item in enumerate(skills.splits(skill, seed)["eval"]):
        options = list(item.distractors)
        answer = rng.randrange(4)
        options.insert(answer, item.answer)
        out.append({"id": f"{skill}_{i}", "prompt": item.prompt, "options": options, "answer": answer})
    return out


def task_config(skill: str, seed: int) -> dict:
    return {
        "task": TASK_NAMES[skill],
        "custom_dataset": "!function zoo_data.load",
        "dataset_kwargs": {"skill": skill},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{prompt}}",
        "doc_to_choice": "{{options}}",
        "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "seed": seed},
    }


LOADER = '''"""Loads a zoo skill's records from this folder (lm-eval `custom_dataset`), wherever lm-eval runs."""

import json
from pathlib import Path

import datasets


def load(skill, **_metadata):
    lines = (Path(__file__).resolve().parent / f"{skill}.jsonl").read_text(encoding="utf-8").splitlines()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([json.loads(line) for line in lines])})
'''


def write_tasks(out: Path = TASKS_DIR, seed: int = 0) -> list[Path]:
    """Write the YAMLs, the JSONL records and the loader; return the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [write_atomic(out / "zoo_data.py", LOADER)]
    for skill in skills.SKILLS:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records(skill, seed))
        written.append(write_atomic(out / f"{skill}.jsonl", lines))
        yaml_path = write_yaml(out / f"{TASK_NAMES[skill]}.yaml", task_config(skill, seed))
        # `!function` is a YAML tag lm-eval resolves: write it unquoted
        text = yaml_path.read_text().replace("'!function zoo_data.load'", "!function zoo_data.load")
        written.append(write_atomic(yaml_path, text))
    return written
