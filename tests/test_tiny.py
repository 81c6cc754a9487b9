"""The tiny parents are real checkpoints of the real architectures, and deterministic."""

import hashlib

import pytest
import torch
from safetensors import safe_open

from release.tiny import write_tiny_father, write_tiny_mother


def _file_tensors(folder):
    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_father_is_a_sharded_gemma4_conditional_generation_checkpoint(tiny_parents):
    from transformers import AutoConfig

    folder = tiny_parents.father
    assert len(list(folder.glob("*.safetensors"))) >= 2
    assert (folder / "model.safetensors.index.json").is_file()
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "gemma4" and cfg.architectures == ["Gemma4ForConditionalGeneration"]
    text = cfg.text_config
    assert text.hidden_size_per_layer_input > 0
    assert text.num_kv_shared_layers > 0
    assert {"sliding_attention", "full_attention"} == set(text.layer_types)
    assert text.tie_word_embeddings and text.final_logit_softcapping == 30.0
    keys = _file_tensors(folder)
    assert any(k.startswith("model.vision_tower.") for k in keys)
    assert all(k.startswith(("model.language_model.", "model.vision_tower.", "model.embed_vision."))
               for k in keys), sorted(keys)
    assert "lm_head.weight" not in keys  # tied


def test_mother_is_a_sharded_qwen3_5_checkpoint_with_a_different_ffn(tiny_parents):
    from transformers import AutoConfig

    father = AutoConfig.from_pretrained(tiny_parents.father).text_config
    cfg = AutoConfig.from_pretrained(tiny_parents.mother)
    assert cfg.model_type == "qwen3_5" and cfg.architectures == ["Qwen3_5ForConditionalGeneration"]
    text = cfg.text_config
    assert text.hidden_size == father.hidden_size
    assert text.intermediate_size != father.intermediate_size
    assert text.hidden_act != father.hidden_activation
    assert text.num_hidden_layers != father.num_hidden_layers
    assert {"linear_attention", "full_attention"} == set(text.layer_types)
    keys = _file_tensors(tiny_parents.mother)
    assert any(k.startswith("mtp.") for k in keys) and any(k.startswith("model.visual.") for k in keys)


@pytest.mark.parametrize("which", ["father", "mother"])
def test_stock_classes_load_every_tensor_from_the_files(tiny_parents, which):
    """Catches the silent random-init trap: every tensor on disk must be the loaded weight."""
    from transformers import Gemma4ForConditionalGeneration, Qwen3_5ForConditionalGeneration

    cls = Gemma4ForConditionalGeneration if which == "father" else Qwen3_5ForConditionalGeneration
    folder = getattr(tiny_parents, which)
    model = cls.from_pretrained(folder)
    loaded = model.state_dict()
    files = _file_tensors(folder)
    checked = 0
    for name, tensor in files.items():
        if name.startswith("mtp."):
            continue  # ignored on load by design, like in the real Qwen3.5 repos
        assert torch.equal(loaded[name], tensor), name
        checked += 1
    assert checked == len(files) - sum(k.startswith("mtp.") for k in files)
    if which == "father":
        assert torch.equal(loaded["lm_head.weight"], files["model.language_model.embed_tokens.weight"])
    # Norms were moved off their init so that a wrongly initialised norm cannot pass unnoticed.
    norms = [t for k, t in files.items() if k.endswith("input_layernorm.weight")]
    assert all(t.std() > 0.05 for t in norms)


@pytest.mark.parametrize("which", ["father", "mother"])
def test_greedy_generation_with_and_without_cache_agree(tiny_parents, which):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = getattr(tiny_parents, which)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "Tell me about Korea."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    kwargs = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        cached = model.generate(**ids, use_cache=True, **kwargs)
        uncached = model.generate(**ids, use_cache=False, **kwargs)
    assert cached.shape[1] == ids["input_ids"].shape[1] + 20
    assert torch.equal(cached, uncached)


def test_chat_template_renders(tiny_parents):
    from transformers import AutoTokenizer

    for folder, marker in ((tiny_parents.father, "<start_of_turn>model\n"),
                           (tiny_parents.mother, "<|im_start|>assistant\n")):
        tok = AutoTokenizer.from_pretrained(folder)
        text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                       add_generation_prompt=True)
        assert text.endswith(marker)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = write_tiny_father(tmp_path / "a", seed=3)
    b = write_tiny_father(tmp_path / "b", seed=3)
    c = write_tiny_father(tmp_path / "c", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    m1 = write_tiny_mother(tmp_path / "m1", seed=3)
    m2 = write_tiny_mother(tmp_path / "m2", seed=3)
    assert _digest(m1) == _digest(m2)
