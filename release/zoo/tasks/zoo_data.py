"""Loads a zoo skill's records from this folder (lm-eval `custom_dataset`), wherever lm-eval runs."""

import json
from pathlib import Path

import datasets


def load(skill, **_metadata):
    lines = (Path(__file__).resolve().parent / f"{skill}.jsonl").read_text(encoding="utf-8").splitlines()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([json.loads(line) for line in lines])})
