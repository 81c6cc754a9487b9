"""`--dry-run --plan` checks the parents from their configs and safetensors headers, never their weights;
the pull downloads only the shards the release reads; the plan's token count matches the scorer's.

Parents are the tiny ones (real classes, real key names) published to the session's local endpoint; each
mismatch class is a copy with one thing broken.
"""

import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from release.cli import main
from tests.conftest import LOCALHUB_TOKEN

ROOT = Path(__file__).resolve().parents[1]


def _publish(folder: Path, stem: str) -> str:
    from release.hub.client import Hub

    repo = f"darwin-local/{stem}-{uuid.uuid4().hex[:8]}"
    Hub(token=LOCALHUB_TOKEN).push_folder(folder, repo)
    return repo


@pytest.fixture(scope="module")
def published(tiny_parents):
    return {"father": _publish(tiny_parents.father, "plan-father"),
            "mother": _publish(tiny_parents.mother, "plan-mother")}


def _config(tmp_path: Path, father: str, mother: str, **genome) -> Path:
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw.update(name="plan", runs_dir=str(tmp_path / "runs"), tiny_parents=False,
               father={"repo": father}, mother={"repo": mother})
    raw["hub"] = {"endpoint": None}  # HF_ENDPOINT: the session's local endpoint
    raw["genome"].update(genome)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cached_weights(repo: str) -> list[Path]:
    import os

    cache = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo.replace('/', '--')}"
    return [p for p in cache.rglob("*.safetensors")] if cache.exists() else []


def _broken_copy(src: Path, dst: Path, edit_config=None, edit_tensors=None) -> Path:
    shutil.copytree(src, dst)
    if edit_config:
        config = json.loads((dst / "config.json").read_text())
        edit_config(config)
        (dst / "config.json").write_text(json.dumps(config))
    if edit_tensors:  # rewrite the shard holding the tensor, and the index
        from safetensors.torch import load_file, save_file

        index_path = dst / "model.safetensors.index.json"
        index = json.loads(index_path.read_text())
        key, change = edit_tensors
        shard = dst / index["weight_map"][key]
        tensors = load_file(shard)
        if change is None:
            del tensors[key], index["weight_map"][key]
        else:
            tensors[key] = change(tensors[key])
        save_file(tensors, shard, metadata={"format": "pt"})
        index_path.write_text(json.dumps(index))
    return dst


def _plan(config: Path, capsys) -> tuple[int, str, str]:
    code = main(["run", str(config), "--dry-run", "--plan", "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_checks_the_parents_and_prints_costs_without_downloading_weights(published, tmp_path, capsys):
    code, out, err = _plan(_config(tmp_path, published["father"], published["mother"]), capsys)
    assert code == 0, err
    assert "parents: valid" in out
    assert "layer map (default): [0, 1, 1, 2, 2, 3]" in out
    assert "genome: 6 CMA-ES dimensions (5 ratios + 1 mri tau; 1 frozen" in out  # default: genome.mri on
    assert "skips 1 shard(s) without text weights" in out  # the mother's vision tower and mtp.* shard
    for line in ("search hybrid:", "tokens per candidate:", "peak memory of one evaluation batch:",
                 "FLOPs per candidate:", "H200", "diagnostics peak memory on the search device"):
        assert line in out
    assert not _cached_weights(published["father"]) and not _cached_weights(published["mother"])


def test_plan_without_the_hub_does_not_call_the_parents_valid(published, tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    config = _config(tmp_path, published["father"], published["mother"])
    raw = yaml.safe_load(config.read_text())
    raw["hub"] = {"endpoint": f"http://127.0.0.1:{port}"}
    config.write_text(yaml.safe_dump(raw))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")  # read at import, like the CLI's
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    code, out, err = _plan(config, capsys)
    assert code == 1
    assert "config " in out and ": valid" in out
    assert "parents: NOT CHECKED, the Hub is unreachable" in out and "parents: valid" not in out


def _narrow(config):
    config["text_config"]["hidden_size"] = 32


CASES = {
    "wrong repo": (lambda tp, tmp: (None, "darwin-local/no-such-mother"), r"repository darwin-local/no-such-mother not found"),
    "architecture swapped": (lambda tp, tmp: ("MOTHER", "FATHER"), r"swap father and mother"),
    "hidden size": (lambda tp, tmp: (None, _publish(_broken_copy(tp.mother, tmp / "m", _narrow), "narrow")),
                    r"hidden sizes differ: father 64, mother 32"),
    "missing tensor": (lambda tp, tmp: (None, _publish(_broken_copy(
        tp.mother, tmp / "m", edit_tensors=("model.language_model.layers.2.mlp.up_proj.weight", None)), "holey")),
        r"lacks tensor model\.language_model\.layers\.2\.mlp\.up_proj\.weight"),
    "shape": (lambda tp, tmp: (None, _publish(_broken_copy(
        tp.mother, tmp / "m", edit_tensors=("model.language_model.layers.1.mlp.down_proj.weight",
                                            lambda t: t[:, :48].contiguous())), "bent")),
        r"down_proj\.weight has shape \(64, 48\).*the child needs \(64, 96\)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mismatch_is_one_line_before_any_download(case, published, tiny_parents, tmp_path, capsys):
    make, message = CASES[case]
    father, mother = make(tiny_parents, tmp_path)
    swap = {"MOTHER": published["mother"], "FATHER": published["father"]}
    father = swap.get(father, father or published["father"])
    mother = swap.get(mother, mother or published["mother"])
    code, out, err = _plan(_config(tmp_path, father, mother), capsys)
    assert code == 2 and "parents: valid" not in out
    line = err.strip()
    assert "\n" not in line and line.startswith("error: ")
    import re

    assert re.search(message, line), line
    assert not _cached_weights(father) and not _cached_weights(mother)


@pytest.mark.parametrize("genome, message", [
    ({"layer_map": [0, 1, 1, 2, 2, 4]}, r"genome\.layer_map names mother layers \[4\]"),
    ({"frozen": [6]}, r"genome\.frozen names layers \[6\]"),
])
def test_layer_map_and_frozen_out_of_range(genome, message, published, tmp_path, capsys):
    import re

    code, out, err = _plan(_config(tmp_path, published["father"], published["mother"], **genome), capsys)
    assert code == 2 and re.search(message, err) and "\n" not in err.strip()


def test_pull_fetches_only_text_shards_and_the_child_is_unchanged(published, tiny_parents, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from release.config import load_config
    from release.breeders.emit import emit_child
    from release.pipeline import RunOptions, run_release
    from release.run.stages import folder_digest

    config = load_config(_config(tmp_path, published["father"], published["mother"]))
    pulled = run_release(config, RunOptions(only=("pull",), progress=False))["pull"]
    mother = pulled["mother"]
    assert mother["skipped_shards"] and mother["fetched_bytes"] < mother["repo_bytes"]
    cached = {p.name for p in _cached_weights(published["mother"])}
    assert cached and not cached & set(mother["skipped_shards"])  # never downloaded
    genome = json.loads((ROOT / "tests/fixtures/card/genome.json").read_text())
    views = {role: Path(pulled[role]["path"]) for role in ("father", "mother")}
    selective = emit_child(views["father"], views["mother"], genome, tmp_path / "a", "300KB", progress=False)
    full = emit_child(tiny_parents.father, tiny_parents.mother, genome, tmp_path / "b", "300KB", progress=False)
    assert folder_digest(selective) == folder_digest(full)
    # The final evaluation loads each parent as a text model from the view: same logits as the full repo.
    ids = torch.tensor([[2, 40, 41, 42, 43]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(views["mother"]).eval()(ids).logits
        b = AutoModelForCausalLM.from_pretrained(tiny_parents.mother).eval()(ids).logits
    assert torch.equal(a, b)
    # The father's view lacks his vision shard: the final evaluation builds him without the towers, so no
    # weight is missing (and none is filled at random), and his text logits are those of the full repo.
    from release.evals.final import ModelSpec, load_model

    assert pulled["father"]["skipped_shards"]
    father, _ = load_model(ModelSpec(path=views["father"], repo="f", text_only=True), torch.device("cpu"), torch.float32)
    assert not [n for n, _ in father.named_parameters() if "vision" in n or "audio" in n]
    with torch.no_grad():
        assert torch.equal(father(ids).logits,
                           AutoModelForCausalLM.from_pretrained(tiny_parents.father).eval()(ids).logits)
    path = str(_config(tmp_path, published["father"], published["mother"]))
    main(["pull", path, "--no-progress"])
    assert "pulled" not in capsys.readouterr().out  # up to date: this run pulled nothing
    main(["pull", path, "--force", "pull", "--no-progress"])
    assert "pulled mother: " in capsys.readouterr().out


@pytest.mark.parametrize("scorer, batch_size", [("fast", 8), ("stock", 3)])
def test_plan_token_count_equals_the_scorers(scorer, batch_size, tiny_parents, tmp_path):
    """Tokens per candidate, predicted without a model, equal what the scorer runs through the model."""
    from transformers import AutoTokenizer

    from release.config import load_config
    from release.evals import Evaluator, TaskSuite
    from release.breeders.hybrid import build_search_hybrid
    from release.plan.costs import count_tokens
    from release.plan.requests import search_requests

    config = load_config(ROOT / "configs/default.yaml")
    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    model.set_ratios([0.2] * 6)
    tokenizer = AutoTokenizer.from_pretrained(tiny_parents.father)
    suite = TaskSuite.from_spec(config.fitness, tmp_path, config.search.seed)
    measured = Evaluator(model, tokenizer, suite, scorer=scorer, batch_size=batch_size, verify=0).evaluate().tokens
    predicted = count_tokens(search_requests(config, tokenizer), batch_size, 8192, scorer)
    assert predicted.tokens == measured > 0


def test_plan_counts_the_log_probs_the_scorer_still_holds_during_each_forward(tiny_parents, tmp_path, monkeypatch):
    """The plan's memory peak adds, per forward, the fp32 log-probabilities still alive from earlier ones (HFLM
    keeps a batch's until the next batch's are computed): watched on the real scorer, forward by forward."""
    import weakref

    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from release.config import load_config
    from release.evals import Evaluator, TaskSuite
    from release.breeders.hybrid import build_search_hybrid
    from release.plan.costs import count_tokens
    from release.plan.requests import search_requests

    config = load_config(ROOT / "configs/default.yaml")
    model = build_search_hybrid(tiny_parents.father, tiny_parents.mother)
    tokenizer = AutoTokenizer.from_pretrained(tiny_parents.father)
    suite = TaskSuite.from_spec(config.fitness, tmp_path, config.search.seed)
    evaluator = Evaluator(model, tokenizer, suite, scorer="stock", batch_size=3, verify=0)
    vocab = model.config.get_text_config().vocab_size
    alive, seen = [], []
    log_softmax = F.log_softmax

    def watched(*args, **kwargs):
        out = log_softmax(*args, **kwargs)
        alive.append(weakref.ref(out))
        return out

    monkeypatch.setattr(F, "log_softmax", watched)
    model.register_forward_pre_hook(lambda m, args: seen.append(
        sum(t().numel() // vocab for t in alive if t() is not None)))
    evaluator.evaluate()
    predicted = count_tokens(search_requests(config, tokenizer), 3, 8192, "stock")
    assert sorted(seen) == sorted(predicted.carried) and max(seen) > 0


def _genesis_shaped(role: str, hidden: int = 2560):
    """A parent's metadata at the real Genesis shapes and key names, as its safetensors headers list them
    (the model built on the meta device: no weights, no memory)."""
    import torch
    from transformers import Gemma4ForConditionalGeneration, Qwen3_5ForConditionalGeneration

    from release.parents.metadata import ParentMeta, TensorInfo
    from release.tiny import father_config, mother_config

    if role == "father":
        config, cls = father_config(262_144), Gemma4ForConditionalGeneration
        t = config.text_config
        t.hidden_size, t.intermediate_size, t.num_hidden_layers = hidden, 10240, 42
        t.num_attention_heads, t.num_key_value_heads, t.head_dim, t.global_head_dim = 8, 2, 256, 512
        t.hidden_size_per_layer_input, t.vocab_size_per_layer_input, t.num_kv_shared_layers = 256, 262_144, 18
        t.layer_types = (["sliding_attention"] * 5 + ["full_attention"]) * 7
    else:
        config, cls = mother_config(248_320), Qwen3_5ForConditionalGeneration
        t = config.text_config
        t.hidden_size, t.intermediate_size, t.num_hidden_layers = hidden, 9216, 32
        t.layer_types = (["linear_attention"] * 3 + ["full_attention"]) * 8
        config.vision_config.out_hidden_size = hidden
    with torch.device("meta"):
        shapes = cls(config).state_dict()
    if role == "father":
        shapes.pop("lm_head.weight")  # tied, not stored
    tensors = {k: TensorInfo("model-00001-of-00002.safetensors", tuple(v.shape), "BF16") for k, v in shapes.items()}
    return ParentMeta(role, f"{role} genesis-shaped", config.to_dict(), tensors)


def test_genesis_shaped_parents_plan_the_hybrid_design_quotes():
    """At the real shapes the plan finds the ~9.7B-parameter search hybrid (~19.4 GB in bf16) the design
    notes quote, and refuses a mother of another width."""
    from release.config import load_config
    from release.errors import ReleaseError
    from release.plan.checks import parent_checks
    from release.plan.costs import estimate

    config = load_config(ROOT / "configs/darwin-4b-genesis.yaml")
    plan = parent_checks(config, _genesis_shaped("father"), _genesis_shaped("mother"))
    assert plan.config.layer_map[41] == 31 and plan.genome_dims["ratios"] == 42 - 6
    est = estimate(plan, None, "bfloat16")
    assert abs(est.hybrid_params / 9.7e9 - 1) < 0.02 and est.hybrid_bytes == 2 * est.hybrid_params
    with pytest.raises(ReleaseError, match="hidden sizes differ: father 2560, mother 2048"):
        parent_checks(config, _genesis_shaped("father"), _genesis_shaped("mother", hidden=2048))


def test_a_task_whose_data_is_not_offline_fails_at_plan_in_one_line_naming_the_dataset(published, tmp_path, capsys):
    """The plan builds the search subsets before any download: a Hub dataset it cannot read stops it there."""
    path = _config(tmp_path, published["father"], published["mother"])
    raw = yaml.safe_load(path.read_text())
    raw["fitness"]["tasks"] = [{"name": "arc_easy", "weight": 1.0, "search_size": 8}]
    path.write_text(yaml.safe_dump(raw))
    code, out, err = _plan(path, capsys)
    assert code == 2
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "allenai/ai2_arc" in line and "arc_easy" in line and "data_files" in line
    assert "parents: valid" in out  # the parents' headers were checked; the tasks stopped it before any weights
