"""Racing a generation: spend items only until each candidate's rank among the others is settled.

CMA-ES reads a generation's ranking, not its exact scores. All candidates answer the search items in the
same seeded order, a round at a time. Two candidates are compared on the items both have answered (a
paired comparison: the item's difficulty cancels), through the per-item differences
d_t = K * w_t * (y_it - y_jt), whose mean is their fitness difference on those items. With z the two-sided
normal quantile of the configured confidence (per comparison), a pair is settled

- when |mean d| > z * se: one is better, with that confidence;
- when |mean d| + z * se < tie: they differ by less than `tie` (fitness units), whose order does not matter;
- when both have answered every item: the comparison is exact.

With `max_items` (a budget per candidate) no candidate answers more: a generation whose candidates are closer
than the budget can tell apart is ranked on the items answered so far (a fresh draw of items each generation,
so CMA-ES, which averages over generations, does not climb one subset's noise).

`se` counts one virtual unit of disagreement (identical answers on a few items prove little). A candidate
stops receiving items once its rank is settled: all its pairs are, or (with `cut`, the number of candidates
CMA-ES selects as parents: the best half) enough of them are to put it surely inside or surely outside the
selected ones. The race ends when every candidate has stopped. Nobody stops before `min_items`.

Estimated fitness (what the search records and ranks): an additive model y_it = a_i + b_t fitted to the
observed answers (alternating least squares), so a candidate that stopped early is judged against the item
difficulties seen by those that went on; observed answers are kept as they are. A candidate that answered
every item gets exactly its full-subset fitness.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


class Race:
    def __init__(self, n_candidates: int, weights: np.ndarray, order: np.ndarray, confidence: float = 0.9,
                 round_items: int = 16, tie: float = 0.0, min_items: int | None = None, cut: int | None = None,
                 max_items: int | None = None):
        self.weights = np.asarray(weights, dtype=float)
        self.order = np.asarray(order, dtype=int)
        self.k = len(self.weights)
        if sorted(self.order.tolist()) != list(range(self.k)):
            raise ValueError("order must be a permutation of the items")
        self.n = n_candidates
        self.round_items = max(1, int(round_items))
        # The budget: no candidate answers more than `max_items` items (None: all of them). Where the race runs
        # out of budget the ranking is the paired comparison on the items answered so far.
        self.max_items = self.k if max_items is None else max(1, min(self.k, int(max_items)))
        self.min_items = min(self.max_items, self.round_items * 2 if min_items is None else int(min_items))
        self.tie = float(tie)
        self.cut = cut
        self.z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2)  # two-sided, per comparison
        self.answers = np.full((n_candidates, self.k), np.nan)
        self.seen = np.zeros(n_candidates, dtype=int)  # how many items of `order` each candidate answered
        self._stopped = np.zeros(n_candidates, dtype=bool)

    # ---- the rounds ----

    def pending(self) -> dict[int, np.ndarray]:
        """Next round: candidate -> the item indices it answers next (empty when the race is over)."""
        return {i: self.order[self.seen[i]:min(self.seen[i] + self.round_items, self.max_items)]
                for i in range(self.n) if not self._stopped[i]}

    def record(self, candidate: int, items: np.ndarray, values: np.ndarray) -> None:
        items = np.asarray(items, dtype=int)
        expected = self.order[self.seen[candidate]:self.seen[candidate] + len(items)]
        if not np.array_equal(items, expected):
            raise ValueError("answers must come in the race's item order")
        self.answers[candidate, items] = values
        self.seen[candidate] += len(items)

    def update(self) -> None:
        """After a round: stop every candidate whose rank is settled (or that answered everything)."""
        for i in range(self.n):
            if not self._stopped[i]:
                self._stopped[i] = self.seen[i] >= self.max_items or (self.seen[i] >= self.min_items
                                                                      and self.rank_settled(i))

    @property
    def done(self) -> bool:
        return bool(self._stopped.all())

    def run(self, answer) -> np.ndarray:
        """Race to the end: `answer(candidate, items) -> values` scores one candidate on some items.
        Returns the estimated fitness of every candidate."""
        while not self.done:
            for i, items in self.pending().items():
                self.record(i, items, answer(i, items))
            self.update()
        return self.estimates()

    # ---- comparisons ----

    def rank_settled(self, i: int) -> bool:
        """Every comparison of i is settled, or (with `cut`) i is surely inside or surely outside the top `cut`."""
        outcomes = [self.compare(i, j) for j in range(self.n) if j != i]
        if all(o is not None for o in outcomes):
            return True
        if self.cut is None:
            return False
        best_rank = 1 + sum(o == -1 for o in outcomes)  # 1 + how many are surely better
        worst_rank = self.n - sum(o == 1 for o in outcomes)  # n - how many are surely worse
        return worst_rank <= self.cut or best_rank > self.cut

    def pair_settled(self, i: int, j: int) -> bool:
        return self.compare(i, j) is not None

    def compare(self, i: int, j: int) -> int | None:
        """1: i is surely better than j, -1: surely worse, 0: equal within `tie` (or exactly), None: unsettled."""
        n = min(self.seen[i], self.seen[j])
        if n < self.min_items:
            return None
        items = self.order[:n]
        d = self.k * self.weights[items] * (self.answers[i, items] - self.answers[j, items])
        mean = float(d.mean())
        if n >= self.k:
            return int(np.sign(mean))
        se = float(np.sqrt((np.sum((d - mean) ** 2) + 1.0) / n / n))
        if abs(mean) > self.z * se:
            return int(np.sign(mean))
        return 0 if abs(mean) + self.z * se < self.tie else None

    # ---- estimates ----

    def predict(self, sweeps: int = 100) -> np.ndarray:
        """[candidates, items]: observed answers, the additive model's prediction elsewhere (clipped to [0, 1])."""
        observed = ~np.isnan(self.answers)
        y = np.where(observed, self.answers, 0.0)
        a, b = np.zeros(self.n), np.zeros(self.k)
        per_item = observed.sum(axis=0)
        known = per_item > 0
        for _ in range(sweeps):
            a = ((y - b) * observed).sum(axis=1) / np.maximum(observed.sum(axis=1), 1)
            b = np.where(known, ((y - a[:, None]) * observed).sum(axis=0) / np.maximum(per_item, 1), 0.0)
        if known.any():  # items nobody answered: an average item
            b[~known] = np.average(b[known], weights=np.abs(self.weights[known]))
        return np.where(observed, self.answers, np.clip(a[:, None] + b[None, :], 0.0, 1.0))

    def estimates(self) -> np.ndarray:
        return self.predict() @ self.weights

    @property
    def items_scored(self) -> int:
        return int(self.seen.sum())
