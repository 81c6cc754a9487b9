"""The zoo's synthetic skills, generated from a seed: prompts, answers, 4-option items and their splits.

Two made-up word languages (`de:` and `tr:`, each maps the same 20 English words to its own 20 nonce
words; a prompt is a 3-word English sentence, the answer its word-by-word translation) and a base mix
(1-digit sums, counting, copying and reversing words of every vocabulary, so the base already writes
the nonce words and a specialist only has to learn one mapping). Every item has a prompt ending in
" =", one gold answer and three distractors; for sentences a distractor is the gold with one word
replaced by another word of the same vocabulary, so only knowing the mapping helps. Chance is 0.25.

Each skill's distinct items are shuffled once by a generator of their own and cut into disjoint
`train` (training only, never shipped as a task) and `eval` (the lm-eval task's records; the project's
subset logic draws the search and held-out items from them, disjoint by construction) parts.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

# Words that are single tokens, and nonce words that are two, in both tiny tokenizers (tests/test_zoo.py
# checks): short sequences make training ~2x cheaper than words spelt out letter by letter.
ENGLISH = ["dog", "fox", "new", "two", "best", "breed", "done", "feed", "model", "most",
           "motive", "murder", "over", "tea", "tell", "today", "weather", "who", "work", "you"]
NONCE_POOL = ["adel", "blac", "byas", "byay", "byit", "byou", "chder", "clen", "eadel", "eader",
              "fory", "hele", "heolu", "ineed", "inir", "inro", "inwer", "isox", "itog", "juad",
              "juel", "juhat", "juqu", "lver", "mely", "moar", "molp", "mown", "mule", "ofay",
              "ofen", "ofic", "onen", "onin", "onse", "opad", "opdel", "opma", "opore", "opwar",
              "quey", "quou", "sdel", "tden", "tolp", "twer"]
LANGUAGES = {"lang_a": "de", "lang_b": "tr"}  # skill -> prompt prefix
SKILLS = ("lang_a", "lang_b", "base")
EVAL_ITEMS = 1200  # per skill: enough for a search subset and ~1000 held-out items


@dataclass(frozen=True)
class Item:
    prompt: str  # ends with " =": lm-eval adds its " " target delimiter before each option
    answer: str
    distractors: tuple[str, str, str]


def nonce_words(seed: int) -> dict[str, list[str]]:
    """20 nonce words per language drawn from the pool by the seed, none shared between languages."""
    pool = NONCE_POOL[:]
    random.Random(f"zoo/nonce/{seed}").shuffle(pool)
    n = len(ENGLISH)
    return {skill: pool[i * n:(i + 1) * n] for i, skill in enumerate(LANGUAGES)}


def _replace_one(rng: random.Random, words: list[str], vocabulary: list[str]) -> str:
    position = rng.randrange(len(words))
    other = rng.choice([w for w in vocabulary if w != words[position]])
    return " ".join(words[:position] + [other] + words[position + 1:])


def _sentence_item(rng: random.Random, prompt: str, gold: list[str], vocabulary: list[str]) -> Item:
    answer, wrong = " ".join(gold), set()
    while len(wrong) < 3:
        wrong.add(_replace_one(rng, gold, vocabulary))
    return Item(prompt, answer, tuple(sorted(wrong)))


def _number_item(rng: random.Random, prompt: str, answer: int, low: int, high: int) -> Item:
    wrong = rng.sample([n for n in range(low, high + 1) if n != answer], 3)
    return Item(prompt, str(answer), tuple(str(n) for n in wrong))


def language_items(skill: str, seed: int) -> list[Item]:
    """Every 3-word sentence of the language, as items, in a seeded order."""
    rng = random.Random(f"zoo/{skill}/{seed}")
    mapping = dict(zip(ENGLISH, nonce_words(seed)[skill]))
    vocabulary = list(mapping.values())
    items = [_sentence_item(rng, f"{LANGUAGES[skill]}: {' '.join(s)} =", [mapping[w] for w in s], vocabulary)
             for s in itertools.product(ENGLISH, repeat=3)]
    rng.shuffle(items)
    return items


def base_items(seed: int) -> list[Item]:
    """The base mix: sums, counts, copies and reversals (words of all three vocabularies), seeded order."""
    rng = random.Random(f"zoo/base/{seed}")
    nonce = nonce_words(seed)
    vocabulary = ENGLISH + nonce["lang_a"] + nonce["lang_b"]
    items = [_number_item(rng, f"sum: {a} + {b} =", a + b, 0, 18) for a in range(10) for b in range(10)]
    items += [_number_item(rng, f"count: {' '.join([w] * n)} =", n, 1, 9) for w in vocabulary for n in range(1, 10)]
    for kind in ("copy", "reverse"):
        for _ in range(3000):
            words = rng.sample(vocabulary, 3)
            gold = words if kind == "copy" else words[::-1]
            items.append(_sentence_item(rng, f"{kind}: {' '.join(words)} =", gold, vocabulary))
    unique = list({item.prompt: item for item in items}.values())  # a repeated prompt would leak across splits
    rng.shuffle(unique)
    return unique


def splits(skill: str, seed: int) -> dict[str, list[Item]]:
    """{"train": ..., "eval": ...}: disjoint; `eval` holds EVAL_ITEMS items (the base mix: a fifth of its items)."""
    items = base_items(seed) if skill == "base" else language_items(skill, seed)
    n_eval = min(EVAL_ITEMS, len(items) // 5)
    return {"eval": items[:n_eval], "train": items[n_eval:]}
