"""Train the zoo: a tiny Gemma 4 base, specialists A and B fine-tuned from it, a tiny Qwen3.5 mother on B.

Each model starts from `release.tiny`'s parent of the same seed (same config, tokenizer, checkpoint
layout) and is written back in that layout with `release.tiny.write_checkpoint`: every tensor of the
starting checkpoint (vision tower, `mtp.*` extras included) with the trained values where training
touched them. fp32: the bytes are what training produced (the reproducibility check compares them),
and task vectors (specialist - base) carry no rounding into the merges; the zoo is ~5 MB.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from release.zoo import skills
from release.zoo.training import Recipe, train

log = logging.getLogger(__name__)

SEED = 0
BASE = Recipe(steps=800, lr=3e-3, mixture={"base": 1.0})
# 50% replay of the base mix. 150 steps, not more: each specialist is already at 1.00 on its language, and
# longer fine-tunes merge worse (measured on this zoo, plain 50/50 linear merge, 200 items per language:
# 150 steps at 2e-3 -> 0.75; 300 steps at 2e-3 -> 0.51; 300 steps at 1e-3 -> 0.51; the specialists ~0.59).
SPECIALIST_A = Recipe(steps=150, lr=2e-3, mixture={"lang_a": 0.5, "base": 0.5})
SPECIALIST_B = Recipe(steps=150, lr=2e-3, mixture={"lang_b": 0.5, "base": 0.5})
# From scratch on language B alone: converged by step 200 (loss 0.008); Qwen3.5's linear-attention layers
# run on transformers' pure-torch fallback here, ~4x a Gemma 4 step, so no step more than needed.
MOTHER_B = Recipe(steps=200, lr=3e-3, mixture={"lang_b": 1.0})
MODELS = ("base", "lang_a", "lang_b", "mother_b")  # folder names under the zoo's models/


@dataclass(frozen=True)
class Trained:
    name: str
    path: Path
    final_loss: float
    seconds: float


def _load(folder: Path, family: str):
    from transformers import AutoTokenizer, Gemma4ForConditionalGeneration, Qwen3_5ForConditionalGeneration

    cls = Gemma4ForConditionalGeneration if family == "gemma4" else Qwen3_5ForConditionalGeneration
    model = cls.from_pretrained(folder, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(folder)


def _save(model, tokenizer, start: Path, out: Path) -> Path:
    """`start`'s tensors with the trained values, in `release.tiny`'s layout, written to a temp folder first."""
    from safetensors.torch import load_file

    from release.tiny import write_checkpoint

    trained = model.state_dict()
    tensors = {}
    for shard in sorted(start.glob("*.safetensors")):
        for key, value in load_file(shard).items():
            tensors[key] = trained[key].detach().clone() if key in trained else value
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_checkpoint(model, tensors, tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _train_one(name: str, start: Path, family: str, recipe: Recipe, items: dict, out: Path) -> Trained:
    begin = time.perf_counter()
    model, tokenizer = _load(start, family)
    loss = train(model, tokenizer, items, recipe, SEED, name)
    path = _save(model, tokenizer, start, out / name)
    seconds = time.perf_counter() - begin
    log.info("zoo: %s trained in %.0f s (final loss %.4f)", name, seconds, loss)
    return Trained(name, path, loss, seconds)


def build_zoo(out: str | Path, only: tuple[str, ...] = MODELS) -> list[Trained]:
    """Train the models named in `only` (a specialist needs the base in `out` or in `only`) into `out`."""
    from release.tiny import write_tiny_father, write_tiny_mother

    torch.set_num_threads(1)  # determinism and speed on a shared CPU (see the module docstring of training)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = {skill: skills.splits(skill, SEED)["train"] for skill in skills.SKILLS}
    done = []
    with tempfile.TemporaryDirectory() as tmp:
        if "base" in only:
            start = write_tiny_father(Path(tmp) / "father", SEED)
            done.append(_train_one("base", start, "gemma4", BASE, items, out))
        for name, recipe in (("lang_a", SPECIALIST_A), ("lang_b", SPECIALIST_B)):
            if name in only:
                done.append(_train_one(name, out / "base", "gemma4", recipe, items, out))
        if "mother_b" in only:
            start = write_tiny_mother(Path(tmp) / "mother", SEED)
            done.append(_train_one("mother_b", start, "qwen3_5", MOTHER_B, items, out))
    return done
