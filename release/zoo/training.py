"""Answer-only training of a tiny causal LM on a mixture of the zoo's skills, deterministic on CPU.

Sequences are tokenised exactly as lm-eval scores a multiple-choice option (the whole "prompt answer"
string encoded at once, the answer being the tokens after the prompt's own encoding), so the tokens a
model learns are the tokens the task scores. Loss: cross-entropy on the answer tokens only. AdamW
(betas 0.9/0.98), linear warm-up over the first tenth of the steps, then cosine to a tenth of the peak.
Same seed, same thread count, same torch: same bytes (the caller pins the thread count).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass

import torch

from release.zoo.skills import Item

log = logging.getLogger(__name__)

BATCH = 64


@dataclass(frozen=True)
class Recipe:
    steps: int
    lr: float
    mixture: dict[str, float]  # skill -> share of each batch


def encode(tokenizer, item: Item) -> tuple[list[int], int]:
    """(token ids of "prompt answer", number of prompt tokens), as lm-eval's `_encode_pair` splits them."""
    whole = tokenizer.encode(f"{item.prompt} {item.answer}", add_special_tokens=False)
    return whole, len(tokenizer.encode(item.prompt, add_special_tokens=False))


def _batch(rows: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and next-token labels (-100 everywhere but the answer tokens)."""
    width = max(len(ids) for ids, _ in rows)
    inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (ids, prompt_len) in enumerate(rows):
        inputs[r, :len(ids)] = torch.tensor(ids)
        labels[r, prompt_len:len(ids)] = torch.tensor(ids[prompt_len:])
    return inputs, labels


def _lr_at(step: int, recipe: Recipe) -> float:
    warmup = max(1, recipe.steps // 10)
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, recipe.steps - warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: torch.nn.Module, tokenizer, train_items: dict[str, list[Item]], recipe: Recipe,
          seed: int, label: str) -> float:
    """Train `model` in place on `recipe`; return the mean loss of the last tenth of the steps."""
    encoded = {skill: [encode(tokenizer, item) for item in train_items[skill]] for skill in recipe.mixture}
    counts = _shares(recipe.mixture)
    rng = random.Random(f"zoo/train/{label}/{seed}")  # own generator: batches do not depend on the caller
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    losses, start = [], time.perf_counter()
    for step in range(recipe.steps):
        rows = [row for skill, n in counts.items() for row in rng.choices(encoded[skill], k=n)]
        inputs, labels = _batch(rows, tokenizer.pad_token_id)
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                                 ignore_index=-100)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, recipe)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            log.info("%s: step %d/%d loss %.4f (%.1f s)", label, step + 1, recipe.steps,
                     sum(losses[-100:]) / len(losses[-100:]), time.perf_counter() - start)
    model.eval()
    tail = losses[-max(1, recipe.steps // 10):]
    return sum(tail) / len(tail)


def _shares(mixture: dict[str, float]) -> dict[str, int]:
    """Rows per batch per skill (largest remainder), summing to BATCH."""
    total = sum(mixture.values())
    exact = {k: BATCH * v / total for k, v in mixture.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: -(exact[k] - counts[k]))[: BATCH - sum(counts.values())]:
        counts[k] += 1
    return counts
