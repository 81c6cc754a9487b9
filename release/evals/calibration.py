"""Calibration fitness: mean log-likelihood per scored token of a text, the whole text, every token once.

A text becomes records. Plain text is one token stream cut into chunks of `chunk_tokens` predicted tokens
(each chunk also reads the token before it, so every token after the first is scored exactly once). With
answer-only scoring the records are prompt/answer pairs (a `separator` on each line, or a JSONL file of
{"prompt", "answer"} objects) and only the answer's tokens count, as lm-eval scores a continuation.

A seeded share of the records (`heldout`) is kept out of the search and scored for the card instead.
The value is the token-weighted mean over the records; its standard error comes from the spread of the
records' means (never 0 with two records or more), the noise the search and the transplant gate use.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from release.config import calibration_pairs
from release.errors import ReleaseError

log = logging.getLogger(__name__)

# English and Korean prose, like the two benchmarks of the Genesis fitness.
DEFAULT_TEXT = (
    "The detective examined the evidence carefully; the suspect had a motive, an opportunity and the means. "
    "In the kitchen, Emma placed the keys on the table before leaving for the garden with her brother. "
    "The team must allocate each person to a task so that the work is done most efficiently. "
    "한국어 문화와 역사에 관한 질문입니다. 보기 중에서 가장 알맞은 것을 고르십시오. "
    "Answer the question by choosing the best option."
)
SPLITS = ("search", "heldout")


@dataclass(frozen=True)
class Record:
    ids: list[int]
    scored: list[bool]  # per position of `ids`: is this token's log-likelihood counted (never the first)

    @property
    def n_scored(self) -> int:
        return sum(self.scored)


@dataclass(frozen=True)
class CalibrationResult:
    value: float  # mean log-likelihood per scored token (higher is better)
    stderr: float | None
    tokens: int  # scored tokens
    records: int


def _pairs(text: str, path: Path | None, separator: str | None) -> list[tuple[str, str]] | None:
    """Prompt/answer pairs for answer-only scoring, or None for plain text (the config checked the file)."""
    try:
        return calibration_pairs(text, path is not None and path.suffix == ".jsonl", separator)
    except ValueError as e:
        raise ReleaseError(f"fitness.calibration_text {path or ''}: {e}".replace(" :", ":")) from None


def build_records(tokenizer, text: str | None, path: Path | None = None, separator: str | None = None,
                  chunk_tokens: int = 512) -> list[Record]:
    """The text as scored records (see the module docstring)."""
    text = DEFAULT_TEXT if text is None else text
    pairs = _pairs(text, path, separator)
    if pairs is None:
        ids = tokenizer(text).input_ids
        if len(ids) < 2:
            raise ReleaseError("calibration text has fewer than 2 tokens: give fitness.calibration_text a longer text")
        # chunk k predicts tokens [1 + k*L, 1 + (k+1)*L) and reads the one before them as context
        return [Record(ids[start - 1:start + chunk_tokens], [False] + [True] * len(ids[start:start + chunk_tokens]))
                for start in range(1, len(ids), chunk_tokens)]
    records = []
    for prompt, answer in pairs:
        context = tokenizer(prompt).input_ids  # as lm-eval: context and continuation encoded apart
        continuation = tokenizer(answer, add_special_tokens=False).input_ids
        if not context or not continuation:
            continue
        ids = (context + continuation)[-(chunk_tokens + 1):]  # a record longer than a chunk keeps its end
        n = min(len(continuation), len(ids) - 1)
        records.append(Record(ids, [False] * (len(ids) - n) + [True] * n))
    if not records:
        raise ReleaseError("fitness.calibration_text holds no prompt/answer pair with an answer: add some")
    return records


def split_records(records: list[Record], heldout: float, seed: int) -> dict[str, list[Record]]:
    """A seeded share of the records for the card (held out), the rest for the search; in text order."""
    n_held = math.floor(heldout * len(records)) if len(records) > 1 else 0
    order = list(range(len(records)))
    random.Random(f"{seed}/calibration").shuffle(order)  # own generator: the global RNG is untouched
    held = set(order[:n_held])
    return {"search": [r for i, r in enumerate(records) if i not in held],
            "heldout": [r for i, r in enumerate(records) if i in held]}


def score_records(model: torch.nn.Module, records: list[Record], batch_size: int = 8) -> CalibrationResult:
    """Token-weighted mean log-likelihood of the scored tokens, and its standard error over records."""
    device = next(model.parameters()).device
    sums, counts = [], []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        width = max(len(r.ids) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        attention = torch.zeros(len(batch), width, dtype=torch.long)
        scored = torch.zeros(len(batch), width, dtype=torch.bool)
        for row, r in enumerate(batch):  # right padding: real tokens keep their positions
            ids[row, :len(r.ids)] = torch.tensor(r.ids)
            attention[row, :len(r.ids)] = 1
            scored[row, :len(r.ids)] = torch.tensor(r.scored)
        ids, attention, scored = ids.to(device), attention.to(device), scored.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        target, mask = ids[:, 1:], scored[:, 1:]
        # fp32 over the vocabulary only at scored positions (a 262k vocabulary makes the rest costly)
        rows = logits[mask].float()
        logprobs = rows.gather(-1, target[mask].unsqueeze(-1)).squeeze(-1) - torch.logsumexp(rows, dim=-1)
        per_row = torch.zeros(len(batch), device=logprobs.device).index_add_(0, mask.nonzero()[:, 0], logprobs)
        sums += per_row.tolist()
        counts += mask.sum(dim=1).tolist()
    tokens = int(sum(counts))
    if tokens == 0:
        raise ReleaseError("the calibration text has no scored token: give a longer text or longer answers")
    value = sum(sums) / tokens
    return CalibrationResult(value=value, stderr=_ratio_stderr(sums, counts, value), tokens=tokens,
                             records=len(records))


def _ratio_stderr(sums: list[float], counts: list[float], value: float) -> float | None:
    """Standard error of a ratio of sums over records (the delta method), None for a single record."""
    n = len(sums)
    if n < 2:
        return None
    mean_count = sum(counts) / n
    residual = [(s - value * c) / mean_count for s, c in zip(sums, counts)]
    return math.sqrt(sum(r * r for r in residual) / (n - 1) / n)


def calibration_fitness(model: torch.nn.Module, tokenizer, text: str | None = None, chunk_tokens: int = 512) -> float:
    """Mean log-likelihood per predicted token of the whole `text` (higher is better; minus the LM loss)."""
    return score_records(model, build_records(tokenizer, text, chunk_tokens=chunk_tokens)).value


class CalibrationSet:
    """The configured calibration text, cut into records and split once; scores a model on a split."""

    def __init__(self, tokenizer, text: str | None, path: Path | None, separator: str | None, chunk_tokens: int,
                 heldout: float, seed: int, batch_size: int = 8):
        records = build_records(tokenizer, text, path, separator, chunk_tokens)
        self.splits = split_records(records, heldout, seed)
        self.batch_size = batch_size
        self.mode = "whole text" if separator is None and (path is None or path.suffix != ".jsonl") else "answers only"
        self.chunk_tokens = chunk_tokens
        self.source = str(path) if path else "built-in text"
        log.info("calibration text %s (%s): %s", self.source, self.mode, self.describe())

    @classmethod
    def from_spec(cls, spec, tokenizer, seed: int) -> CalibrationSet:
        """From `config.fitness` (calibration_text, calibration.*, batch_size)."""
        path = spec.calibration_text
        text = path.read_text(encoding="utf-8") if path else None
        c = spec.calibration
        return cls(tokenizer, text, path, c.separator, c.chunk_tokens, c.heldout, seed, spec.batch_size)

    def tokens(self, split: str) -> int:
        return sum(r.n_scored for r in self.splits[split])

    def describe(self) -> dict:
        """What the card and the logs say was optimised: the mode, chunk length, and tokens per split."""
        return {"source": self.source, "mode": self.mode, "chunk_tokens": self.chunk_tokens,
                **{f"{split}_tokens": self.tokens(split) for split in SPLITS},
                **{f"{split}_records": len(self.splits[split]) for split in SPLITS}}

    def score(self, model: torch.nn.Module, split: str = "search") -> CalibrationResult | None:
        """None when the split holds no record (a held-out share of 0)."""
        records = self.splits[split]
        return score_records(model, records, self.batch_size) if records else None
