"""Tiny parents of the real architectures, built locally and deterministically from a seed.

The father is a real `Gemma4ForConditionalGeneration` checkpoint (text decoder under
`model.language_model.*` plus a tiny vision tower), with every Gemma 4 E4B feature the child must keep
switched on: per-layer inputs, KV sharing, sliding/full layers, tied embeddings, logit softcapping and
non-trivial `layer_scalar`s. The mother is a real `Qwen3_5ForConditionalGeneration` checkpoint (linear
and full attention layers, a vision tower, `mtp.*` extras) with the same hidden size but a different FFN
width, activation and layer count, like the real pair. Both are sharded safetensors with an index, a
generation config and a byte-level BPE tokenizer with a chat template.

Used by the tests and by the embedded default of `make release`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

HIDDEN = 64
MAX_POSITIONS = 8192  # lm-eval takes max_length from here: MuSR prompts must fit untruncated
SHARD_SIZE = "300KB"  # small on purpose: every parent has several shards and an index

FATHER_SPECIALS = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>",
                   "<image_soft_token>", "<start_of_image>", "<end_of_image>", "<video_soft_token>",
                   "<start_of_audio>", "<end_of_audio>", "<audio_soft_token>"]
MOTHER_SPECIALS = ["<|endoftext|>", "<|im_end|>", "<|im_start|>", "<|image_pad|>", "<|vision_start|>",
                   "<|vision_end|>", "<|video_pad|>"]

FATHER_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
MOTHER_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Training text for the tokenizer: English and Korean prose, multiple-choice phrasing and chat turns,
# so the benchmark formats (CLIcK is Korean, MuSR English) tokenise to reasonable lengths.
_CORPUS = """
The quick brown fox jumps over the lazy dog. A murder mystery: who is the most likely murderer?
Answer the question by choosing the best option. Question: Where is the object most likely to be found?
In the kitchen, Emma placed the keys on the table before leaving for the garden with her brother.
The team must allocate each person to a task so that the work is done most efficiently.
Evolutionary search breeds a child model from two parents by blending their feed-forward layers.
The detective examined the evidence carefully; the suspect had a motive, an opportunity and the means.
Hello! How can I help you today? Please tell me about the weather, the news, and the history of Korea.
다음 문제를 읽고 정답을 고르세요. 한국의 수도는 서울입니다. 정답: A
한국어 문화와 역사에 관한 질문입니다. 보기 중에서 가장 알맞은 것을 고르십시오.
경제, 법률, 정치, 사회, 문화, 역사, 지리, 문법, 어휘, 맞춤법에 대한 문제를 풀어 봅시다.
A. B. C. D. E. 1 2 3 4 5 6 7 8 9 0 , . ; : ? ! ( ) [ ] " ' - the of and to in is that it was for
"""


@dataclass(frozen=True)
class TinyParents:
    father: Path
    mother: Path


def _tokenizer(specials: list[str], bos: str | None, eos: str, pad: str, chat_template: str, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad)
    fast.chat_template = chat_template
    return fast


def father_tokenizer():
    return _tokenizer(FATHER_SPECIALS, "<bos>", "<eos>", "<pad>", FATHER_CHAT_TEMPLATE, vocab=640)


def mother_tokenizer():
    return _tokenizer(MOTHER_SPECIALS, None, "<|im_end|>", "<|endoftext|>", MOTHER_CHAT_TEMPLATE, vocab=640)


def father_config(vocab_size: int):
    from transformers import Gemma4Config

    text = dict(
        vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, global_head_dim=32,
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=MAX_POSITIONS, sliding_window=16,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        final_logit_softcapping=30.0, vocab_size_per_layer_input=vocab_size, hidden_size_per_layer_input=8,
        num_kv_shared_layers=2, tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16, patch_size=4, position_embedding_size=64)
    return Gemma4Config(
        text_config=text, vision_config=vision, audio_config=None, image_token_id=5, boi_token_id=6,
        eoi_token_id=7, video_token_id=8, boa_token_id=9, eoa_token_index=10, audio_token_id=11,
    )


def mother_config(vocab_size: int):
    from transformers import Qwen3_5Config

    text = dict(
        vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, hidden_act="silu",
        max_position_embeddings=MAX_POSITIONS, linear_conv_kernel_dim=4, linear_key_head_dim=16,
        linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4,
                  out_hidden_size=HIDDEN, num_position_embeddings=16)
    return Qwen3_5Config(text_config=text, vision_config=vision, image_token_id=3, video_token_id=6,
                         vision_start_token_id=4, vision_end_token_id=5)


def _perturb(model: torch.nn.Module, seed: int, norm_base: float) -> None:
    """Move norms and layer scalars off their constant init so every weight matters in tests."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") and p.dim() == 1:
                p.copy_(norm_base + 0.2 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def write_checkpoint(model, tensors: dict[str, torch.Tensor], out: Path) -> None:
    """Sharded safetensors + index, written by hand so extra keys (mtp.*) land like in real repos.

    The text decoder's tensors fill the first shards, the rest (vision tower, mtp.*) shards of their own, as
    in many real repos: a pull that needs only the text decoder can skip those shards.
    """
    from huggingface_hub import split_torch_state_dict_into_shards  # late: HF_ENDPOINT may be set after us
    from safetensors.torch import save_file

    text = {k: v for k, v in tensors.items() if k.startswith(("model.language_model.", "lm_head."))}
    groups = [g for g in (text, {k: v for k, v in tensors.items() if k not in text}) if g]
    shards = [names for group in groups
              for names in split_torch_state_dict_into_shards(group, max_shard_size=SHARD_SIZE)
              .filename_to_tensors.values()]
    weight_map = {}
    for i, names in enumerate(shards, 1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors" if len(shards) > 1 else "model.safetensors"
        save_file({n: tensors[n].contiguous().clone() for n in names}, out / filename, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, filename))
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
                 "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)


def write_tiny_father(out: str | Path, seed: int = 0) -> Path:
    from transformers import GenerationConfig, Gemma4ForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = father_tokenizer()
    torch.manual_seed(seed)
    model = Gemma4ForConditionalGeneration(father_config(len(tok))).eval()
    _perturb(model, seed, norm_base=1.0)
    model.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=[1, 4], pad_token_id=0)
    tensors = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to embeddings
    write_checkpoint(model, tensors, out)
    tok.save_pretrained(out)
    log.info("wrote tiny Gemma 4 father to %s", out)
    return out


def write_tiny_mother(out: str | Path, seed: int = 0) -> Path:
    from transformers import GenerationConfig, Qwen3_5ForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = mother_tokenizer()
    torch.manual_seed(seed + 1000)
    model = Qwen3_5ForConditionalGeneration(mother_config(len(tok))).eval()
    _perturb(model, seed + 1000, norm_base=0.0)  # Qwen3.5 norms are zero-centred (1 + weight)
    model.generation_config = GenerationConfig(eos_token_id=[1], pad_token_id=0)
    tensors = dict(model.state_dict())
    # Real Qwen3.5 checkpoints carry a multi-token-prediction head that the classes ignore on load.
    g = torch.Generator().manual_seed(seed + 2000)
    tensors["mtp.fc.weight"] = 0.02 * torch.randn(HIDDEN, 2 * HIDDEN, generator=g)
    tensors["mtp.norm.weight"] = 0.1 * torch.randn(HIDDEN, generator=g)
    tensors["mtp.layers.0.mlp.gate_proj.weight"] = 0.02 * torch.randn(96, HIDDEN, generator=g)
    write_checkpoint(model, tensors, out)
    tok.save_pretrained(out)
    log.info("wrote tiny Qwen3.5 mother to %s", out)
    return out


def write_tiny_parents(root: str | Path, seed: int = 0) -> TinyParents:
    root = Path(root)
    return TinyParents(father=write_tiny_father(root / "father", seed),
                       mother=write_tiny_mother(root / "mother", seed))


def write_tiny_finetune(out: str | Path, seed: int = 0, scale: float = 0.1) -> Path:
    """A tiny "fine-tune" of the tiny Gemma 4 father of `seed`: the same architecture, files and tokenizer,
    every floating tensor moved by seeded noise of `scale` times its mean magnitude. The mother of the
    same-architecture default (like TeichAI/Claude-Opus-Distill-E4B, a fine-tune of google/gemma-4-E4B-it)."""
    import tempfile

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        return _perturbed_copy(write_tiny_father(Path(tmp) / "father", seed), out, seed, scale)


def _perturbed_copy(father: Path, out: Path, seed: int, scale: float) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(father, out, dirs_exist_ok=True)
    g = torch.Generator().manual_seed(seed + 3000)
    for shard in sorted(out.glob("*.safetensors")):
        tensors = load_file(shard)
        for key in sorted(tensors):
            t = tensors[key]
            if t.is_floating_point():
                tensors[key] = t + scale * (t.abs().mean() + 1e-3) * torch.randn(t.shape, generator=g, dtype=t.dtype)
        save_file(tensors, shard, metadata={"format": "pt"})
    log.info("wrote tiny Gemma 4 fine-tune (same-architecture mother) to %s", out)
    return out


def write_tiny_same_arch_parents(root: str | Path, seed: int = 0) -> TinyParents:
    root = Path(root)
    father = write_tiny_father(root / "father", seed)
    return TinyParents(father=father, mother=_perturbed_copy(father, root / "mother", seed, scale=0.1))


def write_tiny_causal_pair(root: str | Path, seed: int = 0, hidden: int = HIDDEN, intermediate: int = 128,
                           layers: int = 2, heads: int = 2, kv_heads: int = 1, head_dim: int = 32,
                           dtype: torch.dtype = torch.float32) -> TinyParents:
    """Two plain `Qwen3ForCausalLM` checkpoints of one architecture, the mother a seeded fine-tune of the
    father: an architecture mergekit supports, to check the same-architecture breeders against it."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    root = Path(root)
    tok = father_tokenizer()
    config = Qwen3Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2)
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random at any width without transformers' slow init
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("norm.weight")
                    else 0.02 * torch.randn(p.shape, generator=g))
    model = model.to(dtype).eval()
    father = root / "father"
    father.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(father)
    tok.save_pretrained(father)
    return TinyParents(father=father, mother=_perturbed_copy(father, root / "mother", seed, scale=0.1))
