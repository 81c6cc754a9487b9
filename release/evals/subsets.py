"""A fixed, seeded search subset and a held-out set disjoint from it, stratified over subtasks.

Items are (subtask, index into that subtask's eval docs), the form lm-eval's `samples=` takes.
Each subtask gets a share of the requested size proportional to its size (largest remainder), and
its items are drawn from one seeded permutation: the first ones go to the search subset, the next
ones to the held-out set, so the two can never overlap.
"""

from __future__ import annotations

import random

from release.errors import ReleaseError


def allocate(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split `total` over subtasks in proportion to `sizes` (largest remainder, ties by name)."""
    pool = sum(sizes.values())
    exact = {k: total * n / pool for k, n in sizes.items()}
    share = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: (-(exact[k] - share[k]), k))
    for k in by_remainder[: total - sum(share.values())]:
        share[k] += 1
    return share


def split_items(name: str, sizes: dict[str, int], search_size: int, heldout_size: int | None,
                seed: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Return (search, heldout): subtask -> sorted doc indices. heldout_size None = every other item."""
    total = sum(sizes.values())
    heldout_size = total - search_size if heldout_size is None else heldout_size
    if search_size + heldout_size > total or heldout_size < 1:
        raise ReleaseError(f"fitness.tasks {name}: search_size {search_size} + heldout_size {heldout_size} "
                           f"do not fit in its {total} items; lower search_size or heldout_size")
    search_share = allocate(search_size, sizes)
    rest = {k: n - search_share[k] for k, n in sizes.items()}
    heldout_share = allocate(heldout_size, rest)
    search, heldout = {}, {}
    for task, n in sorted(sizes.items()):
        order = list(range(n))
        random.Random(f"{seed}/{name}/{task}").shuffle(order)  # own generator: the global RNG is untouched
        s, h = search_share[task], heldout_share[task]
        search[task] = sorted(order[:s])
        heldout[task] = sorted(order[s:s + h])
    return search, heldout
