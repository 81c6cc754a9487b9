"""The trained tiny zoo: committed files match their manifest, the skills are what they claim, each
specialist scores as designed under real lm-eval, and the plain 50/50 merge of A and B beats both.

Slow tests (DARWIN_SLOW=1): the base and the Qwen3.5 mother scored too, and the reproducibility check
(retrain, compare bytes; also `python -m release.zoo --check`), which takes minutes.
"""

import math
import os
from pathlib import Path

import pytest
import torch

from release.config import FitnessSpec, TaskSpec
from release.zoo import manifest, skills
from release.zoo.tasks import TASK_NAMES, records, write_tasks

MODELS = manifest.ZOO_DIR / "models"
HELDOUT = 150  # items per language skill: the merge gain (~0.15) is > 3 combined stderr (~0.03) with margin


def test_committed_files_match_the_manifest():
    expected = manifest.read_manifest()
    assert any(rel.startswith("models/lang_a/") for rel in expected)
    assert manifest.differences(expected, manifest.digests()) == []


def test_manifest_reports_a_changed_file(tmp_path):
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "models" / "m" / "w.safetensors").write_bytes(b"weights")
    manifest.write_manifest(tmp_path)
    (tmp_path / "models" / "m" / "w.safetensors").write_bytes(b"other")
    (tmp_path / "tasks" / "new.jsonl").write_text("{}\n")
    assert manifest.differences(manifest.read_manifest(tmp_path), manifest.digests(tmp_path)) == [
        "not in the manifest: tasks/new.jsonl", "changed: models/m/w.safetensors"]


def test_task_files_regenerate_to_the_committed_bytes(tmp_path):
    write_tasks(tmp_path / "tasks")
    regenerated = manifest.digests(tmp_path)
    committed = {rel: d for rel, d in manifest.read_manifest().items() if rel.startswith("tasks/")}
    assert regenerated == committed


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_train_and_eval_items_are_disjoint_and_well_formed(skill):
    parts = skills.splits(skill, 0)
    train = {i.prompt for i in parts["train"]}
    assert len(parts["eval"]) == skills.EVAL_ITEMS
    assert not train & {i.prompt for i in parts["eval"]}
    for record in records(skill, 0)[:200]:
        assert len(set(record["options"])) == 4 and 0 <= record["answer"] < 4


def test_languages_map_the_same_english_words_to_different_nonce_words():
    words = skills.nonce_words(0)
    assert len(set(words["lang_a"])) == len(set(words["lang_b"])) == len(skills.ENGLISH)
    assert not set(words["lang_a"]) & set(words["lang_b"])


def test_words_are_short_in_both_tokenizers():
    from release.tiny import father_tokenizer, mother_tokenizer

    for tok in (father_tokenizer(), mother_tokenizer()):
        assert {len(tok.encode(" " + w)) for w in skills.ENGLISH} == {1}
        assert {len(tok.encode(" " + w)) for w in skills.NONCE_POOL} == {2}


# ---- scores under real lm-eval ----

@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from release.evals.suite import TaskSuite

    spec = FitnessSpec(tasks=[TaskSpec(name=TASK_NAMES["lang_a"], weight=1.0, search_size=8, heldout_size=HELDOUT),
                              TaskSpec(name=TASK_NAMES["lang_b"], weight=1.0, search_size=8, heldout_size=HELDOUT),
                              TaskSpec(name=TASK_NAMES["base"], weight=1.0, search_size=8, heldout_size=50)])
    return TaskSuite.from_spec(spec, tmp_path_factory.mktemp("zoo-suite"), seed=0)


def _load(name: str):
    from transformers import AutoTokenizer, Gemma4ForConditionalGeneration, Qwen3_5ForConditionalGeneration

    cls = Qwen3_5ForConditionalGeneration if name.startswith("mother") else Gemma4ForConditionalGeneration
    return cls.from_pretrained(MODELS / name, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(MODELS / name)


def _heldout(model, tokenizer, suite):
    from release.evals.evaluator import Evaluator

    return Evaluator(model, tokenizer, suite, split="heldout", batch_size=32).evaluate()


@pytest.fixture(scope="module")
def scores(suite):
    return {name: _heldout(*_load(name), suite) for name in ("lang_a", "lang_b")}


def test_each_specialist_knows_its_language_and_not_the_other(scores):
    a, b = scores["lang_a"].scores, scores["lang_b"].scores
    assert a["zoo_lang_a"] > 0.9 and b["zoo_lang_b"] > 0.9
    assert a["zoo_lang_b"] < 0.4 and b["zoo_lang_a"] < 0.4  # chance is 0.25
    assert a["zoo_base"] > 0.9 and b["zoo_base"] > 0.9  # replay kept the base mix (the base: 0.99)


@pytest.mark.skipif(not os.environ.get("DARWIN_SLOW"), reason="two more models to score (a minute): DARWIN_SLOW=1")
def test_the_base_knows_the_mix_and_the_qwen_mother_language_b(suite):
    base, mother = (_heldout(*_load(name), suite).scores for name in ("base", "mother_b"))
    assert base["zoo_base"] > 0.9 and base["zoo_lang_a"] < 0.4 and base["zoo_lang_b"] < 0.4
    assert mother["zoo_lang_b"] > 0.9 and mother["zoo_lang_a"] < 0.4


def _language_mean(result) -> tuple[float, float]:
    """Mean over both languages' held-out items and its stderr (the tasks' means as independent)."""
    names = (TASK_NAMES["lang_a"], TASK_NAMES["lang_b"])
    mean = sum(result.scores[n] for n in names) / 2
    return mean, math.sqrt(sum(result.stderrs[n] ** 2 for n in names)) / 2


def test_the_plain_linear_merge_beats_both_specialists(scores, suite):
    from safetensors.torch import load_file

    from release.breeders.merge_ops import merge

    model, tokenizer = _load("lang_a")
    a = {k: v for shard in sorted((MODELS / "lang_a").glob("*.safetensors")) for k, v in load_file(shard).items()}
    b = {k: v for shard in sorted((MODELS / "lang_b").glob("*.safetensors")) for k, v in load_file(shard).items()}
    merged = {k: merge("linear", a[k], b[k], 0.5) if a[k].is_floating_point() else a[k] for k in a}
    missing, unexpected = model.load_state_dict(merged, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the embeddings
    child, child_se = _language_mean(_heldout(model, tokenizer, suite))
    for parent in ("lang_a", "lang_b"):
        mean, se = _language_mean(scores[parent])
        assert child - mean > 3 * math.sqrt(child_se ** 2 + se ** 2), (parent, child, mean)


@pytest.mark.skipif(not os.environ.get("DARWIN_SLOW"), reason="retrains the zoo (minutes): set DARWIN_SLOW=1")
def test_retraining_gives_the_same_bytes():
    from release.zoo.__main__ import main

    assert main(["--check"]) == 0


@pytest.mark.parametrize("method, mother", [("ffn_blend", "mother_b"), ("dare_ties", "lang_b"), ("linear", "lang_b")])
def test_zoo_parents_publish_the_files_the_manifest_vouches_for(method, mother, tmp_path):
    from release.zoo.parents import zoo_parent_writers

    expected = manifest.read_manifest()
    for role, name in (("father", "lang_a"), ("mother", mother)):
        folder = zoo_parent_writers(method)[role](tmp_path / role, seed=42)
        copied = {f"models/{name}/{p.name}": manifest.sha256(p) for p in folder.iterdir()}
        assert copied == {rel: d for rel, d in expected.items() if rel.startswith(f"models/{name}/")}
    assert "base" not in zoo_parent_writers(method)


def test_a_config_with_a_common_ancestor_gets_the_zoo_base(tmp_path):
    from release.zoo.parents import zoo_parent_writers

    folder = zoo_parent_writers("ties", base=True)["base"](tmp_path / "base", seed=0)
    assert manifest.sha256(folder / "config.json") == manifest.read_manifest()["models/base/config.json"]


def test_the_embedded_defaults_breed_the_zoo():
    from release.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("default.yaml", "default-same-arch.yaml"):
        config = load_config(root / name)
        assert config.tiny_parents == "zoo"
        assert {t.name for t in config.fitness.tasks} == {"zoo_lang_a", "zoo_lang_b"}
