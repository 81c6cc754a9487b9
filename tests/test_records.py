"""Stage records: what each stage hands the next, stored in stages.json with the keys it always had."""

import json

import pytest

from release.errors import ReleaseError
from release.run.records import Bred, Parent, Pulled, Pushed
from release.run.stages import StageBook

PARENT = {"repo": "a/father", "revision": "f" * 40, "path": "/p/f", "content": "0123456789abcdef"}


def test_a_pull_without_a_file_selection_keeps_its_json_as_before():
    pulled = Pulled.from_json({"father": PARENT, "mother": {**PARENT, "repo": "a/mother"}})
    assert pulled.to_json() == {"father": PARENT, "mother": {**PARENT, "repo": "a/mother"}}
    assert pulled.fetched() == {}
    selected = Pulled(Parent(**PARENT, fetched_bytes=10, repo_bytes=30, skipped_shards=["b.safetensors"]),
                      Parent(**PARENT))
    assert selected.fetched() == {"father": [10, 30]}
    assert selected.to_json()["father"]["skipped_shards"] == ["b.safetensors"]


def test_the_breeders_own_facts_stay_top_level_keys_of_the_breed_record():
    stored = {"genome": [0.1, 0.0], "fitness": 0.5, "scores": {"synthetic": 0.5}, "generations": 1,
              "evaluations": 4, "seconds": 1.5, "stop_reason": "max_generations", "device": "cpu",
              "dtype": "float32", "model_class": "Gemma4ForConditionalGeneration", "seed": 7}
    bred = Bred.from_json(stored)
    assert bred.live == {"model_class": "Gemma4ForConditionalGeneration", "seed": 7}
    assert bred.genes is None and bred.transplant is None  # records from before the registry and the MRI
    assert Bred.from_json(bred.to_json()) == bred and bred.to_json()["seed"] == 7


def test_a_record_missing_a_field_is_a_one_line_error_naming_it():
    with pytest.raises(ReleaseError) as e:
        Pulled.from_json({"father": PARENT, "mother": {k: v for k, v in PARENT.items() if k != "content"}})
    assert "'content'" in str(e.value) and "stages.json" in str(e.value) and "\n" not in str(e.value)


def test_the_stage_book_stores_a_record_as_json_and_a_rerun_reads_it_back(tmp_path):
    calls = []

    def push():
        calls.append(1)
        return Pushed(repo="a/child", revision="c" * 40), []

    first = StageBook(tmp_path).run("push", ["key"], push, record=Pushed)
    stored = json.loads((tmp_path / "stages.json").read_text())["push"]["result"]
    assert stored == {"repo": "a/child", "revision": "c" * 40, "ref": "main", "target": "main", "pr_url": None,
                      "committed": True}
    again = StageBook(tmp_path).run("push", ["key"], push, still_valid=lambda r: r.revision == "c" * 40,
                                    record=Pushed)
    assert again == first and len(calls) == 1
