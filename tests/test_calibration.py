"""Calibration fitness (issue 28): the whole text scored, every token once, answer-only scoring, a
held-out share for the card; checked against a plain per-record forward pass on a real tiny Gemma 4."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from release.evals.calibration import CalibrationSet, build_records, score_records, split_records
from release.tiny import write_tiny_father

WORDS = "the quick brown fox jumps over a lazy dog while seven bakers sing loudly near old harbour walls".split()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_tiny_father(tmp_path_factory.mktemp("calibration") / "father", seed=0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def _text(n_words: int, seed: int = 0) -> str:
    rng = __import__("random").Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _direct(model, ids: list[int], scored: list[bool]) -> tuple[float, int]:
    """Sum of log p(token | everything before it in the record) over the scored tokens: one plain forward."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
    mask = torch.tensor(scored[1:])
    return float(logprobs[mask].sum()), int(mask.sum())


def test_a_10000_token_text_is_scored_whole_every_token_once(tiny):
    model, tokenizer = tiny
    text = _text(4000)
    n = len(tokenizer(text).input_ids)
    assert n >= 10_000
    records = build_records(tokenizer, text, chunk_tokens=512)
    # every token after the first predicted exactly once, in order, across the chunks
    predicted = [t for r in records for t, s in zip(r.ids, r.scored) if s]
    assert predicted == tokenizer(text).input_ids[1:]
    result = score_records(model, records[:4], batch_size=3)  # padded batches of unequal records
    direct = [_direct(model, r.ids, r.scored) for r in records[:4]]
    assert result.tokens == sum(c for _, c in direct) == 4 * 512
    assert result.value == pytest.approx(sum(s for s, _ in direct) / result.tokens, abs=1e-4)
    assert result.stderr is not None and result.stderr > 0


def test_answer_only_scoring_counts_only_the_answers(tiny, tmp_path):
    model, tokenizer = tiny
    pairs = [(f"de: {_text(3, i)} =", f" {_text(2, 100 + i)}") for i in range(6)]
    lines = tmp_path / "pairs.txt"
    lines.write_text("\n".join(p + a for p, a in pairs) + "\n")
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in pairs))
    by_separator = build_records(tokenizer, lines.read_text(), lines, separator="=")
    by_jsonl = build_records(tokenizer, jsonl.read_text(), jsonl)
    assert by_separator == by_jsonl  # the prompt keeps its separator, the answer the rest of the line
    for record, (_, answer) in zip(by_jsonl, pairs):
        answer_ids = tokenizer(answer, add_special_tokens=False).input_ids
        assert [t for t, s in zip(record.ids, record.scored) if s] == answer_ids
    result = score_records(model, by_jsonl)
    direct = [_direct(model, r.ids, r.scored) for r in by_jsonl]
    assert result.value == pytest.approx(sum(s for s, _ in direct) / sum(c for _, c in direct), abs=1e-4)
    whole = score_records(model, build_records(tokenizer, lines.read_text()))
    assert whole.tokens > result.tokens  # the prompts are not in the answer-only score


def test_the_held_out_share_is_disjoint_seeded_and_logged(tiny, caplog):
    _, tokenizer = tiny
    records = build_records(tokenizer, _text(800), chunk_tokens=64)
    split = split_records(records, 0.25, seed=42)
    assert len(split["heldout"]) == math.floor(0.25 * len(records)) > 0
    assert sorted(map(id, split["search"] + split["heldout"])) == sorted(map(id, records))
    assert split_records(records, 0.25, seed=42) == split
    assert split_records(records, 0.25, seed=7) != split
    with caplog.at_level("INFO", logger="release.evals.calibration"):
        text = CalibrationSet(tokenizer, _text(800), None, None, 64, 0.25, seed=42)
    facts = text.describe()
    assert facts["search_tokens"] + facts["heldout_tokens"] == len(tokenizer(_text(800)).input_ids) - 1
    assert "chunk_tokens" in caplog.text and str(facts["search_tokens"]) in caplog.text


def test_a_line_without_the_separator_is_one_line(tiny):
    _, tokenizer = tiny
    from release.errors import ReleaseError

    with pytest.raises(ReleaseError, match="line 2 has no separator '=>'"):
        build_records(tokenizer, "a => b\nno answer here\n", separator="=>")
