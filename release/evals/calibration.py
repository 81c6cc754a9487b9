"""The cheap built-in fitness for smoke runs: mean log-likelihood per token of a calibration text."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from release.errors import ReleaseError

# English and Korean prose, like the two benchmarks of the Genesis fitness.
DEFAULT_TEXT = (
    "The detective examined the evidence carefully; the suspect had a motive, an opportunity and the means. "
    "In the kitchen, Emma placed the keys on the table before leaving for the garden with her brother. "
    "The team must allocate each person to a task so that the work is done most efficiently. "
    "한국어 문화와 역사에 관한 질문입니다. 보기 중에서 가장 알맞은 것을 고르십시오. "
    "Answer the question by choosing the best option."
)


def calibration_fitness(model: torch.nn.Module, tokenizer, text: str | None = None, max_tokens: int = 512) -> float:
    """Mean log-likelihood per predicted token of `text` (higher is better; the negative of the LM loss)."""
    ids = tokenizer(text if text is not None else DEFAULT_TEXT, return_tensors="pt").input_ids[:, :max_tokens]
    if ids.shape[1] < 2:
        raise ReleaseError("calibration text has fewer than 2 tokens: give fitness.calibration_text a longer text")
    ids = ids.to(next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    logprobs = F.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1))
    return float(logprobs.mean())
