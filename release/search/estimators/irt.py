"""Item response theory for cheap fitness: fit the items once, then estimate a candidate from a few anchors.

The method is tinyBenchmarks' (Polo et al., 2024), which MERGE3 (ICML 2025) applies to evolutionary merging:

1. Responses. `Y[i, k]` is respondent i's score on item k (0/1 for accuracy metrics; fractions are
   allowed); respondents here are the two parents and a few seeded probe candidates, each scored once on
   the whole search subset. `w[k]` is the item's share of the fitness (the weights sum to 1, so a full
   evaluation's fitness is `w @ Y[i]`).
2. A multidimensional two-parameter logistic model, P(Y[i, k] = 1) = sigmoid(theta_i . alpha_k + beta_k):
   theta_i is a respondent's ability (D numbers: a merge of two specialists has at least two skills),
   alpha_k what the item asks for, beta_k its easiness. With a handful of respondents the fit is a MAP with
   standard normal priors on every parameter (tinyBenchmarks uses the same priors, fitted by variational
   inference over hundreds of models; here L-BFGS on the exact log-posterior, seconds at most).
3. Anchors. Items are clustered by their IRT parameters (k-means, weighted by w), and each cluster is
   represented by the item nearest its centre, carrying the cluster's total weight.
4. Estimate of a new candidate from its anchor answers y_A:
   - anchor estimate: sum over clusters of weight * anchor answer (unbiased-ish, noisy);
   - p-IRT: theta fitted on y_A (MAP, item parameters fixed), then the anchors' observed answers plus
     sigmoid(theta . alpha_k + beta_k) for every other item (smooth, biased where the model is wrong);
   - gp-IRT, the one used: lam * anchor + (1 - lam) * p-IRT, with lam chosen by leave-one-respondent-out
     error on the responses themselves (tinyBenchmarks picks lam from the same trade-off).
   Per item, the estimate is a predicted score y_hat[k] in [0, 1], so per-task scores follow as well.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

LAMBDAS = np.linspace(0.0, 1.0, 11)  # the grid lam is chosen on


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


@dataclass(frozen=True)
class ItemModel:
    """Fitted item parameters (alpha [K, D], beta [K]) and the respondents' abilities (theta [N, D])."""

    alpha: np.ndarray
    beta: np.ndarray
    theta: np.ndarray

    def probabilities(self, theta: np.ndarray) -> np.ndarray:
        """P(correct) of every item for abilities theta ([D] or [M, D])."""
        return _sigmoid(np.asarray(theta) @ self.alpha.T + self.beta)


def fit_items(Y: np.ndarray, dims: int = 2, seed: int = 0) -> ItemModel:
    """MAP fit of the multidimensional 2PL model to the response matrix Y [N respondents, K items]."""
    from scipy.optimize import minimize  # only the IRT estimator needs scipy

    Y = np.asarray(Y, dtype=float)
    n, k = Y.shape
    rng = np.random.default_rng(seed)
    # Small random start: at exactly zero the abilities' gradient vanishes (alpha = theta = 0 is a saddle).
    start = np.concatenate([0.1 * rng.standard_normal(n * dims), 0.1 * rng.standard_normal(k * dims), np.zeros(k)])

    def unpack(p):
        return p[:n * dims].reshape(n, dims), p[n * dims:(n + k) * dims].reshape(k, dims), p[(n + k) * dims:]

    def objective(p):
        theta, alpha, beta = unpack(p)
        logits = theta @ alpha.T + beta
        # -log-likelihood of Bernoulli(sigmoid(logits)) with fractional targets, plus N(0, 1) priors
        nll = np.sum(np.logaddexp(0.0, logits) - Y * logits) + 0.5 * (p @ p)
        g = _sigmoid(logits) - Y  # d nll / d logits
        grad = np.concatenate([(g @ alpha).ravel(), (g.T @ theta).ravel(), g.sum(axis=0)]) + p
        return nll, grad

    out = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    theta, alpha, beta = unpack(out.x)
    return ItemModel(alpha=alpha, beta=beta, theta=theta)


def fit_ability(model: ItemModel, items: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """MAP ability theta [D] of one respondent from its answers on `items` (item parameters fixed)."""
    from scipy.optimize import minimize

    alpha, beta, y = model.alpha[items], model.beta[items], np.asarray(answers, dtype=float)

    def objective(theta):
        logits = alpha @ theta + beta
        return (np.sum(np.logaddexp(0.0, logits) - y * logits) + 0.5 * theta @ theta,
                alpha.T @ (_sigmoid(logits) - y) + theta)

    return minimize(objective, np.zeros(alpha.shape[1]), jac=True, method="L-BFGS-B").x


def choose_anchors(model: ItemModel, weights: np.ndarray, n_anchors: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor item indices, their weights, each item's anchor): k-means on the items' (alpha, beta), weighted
    by the item weights; a cluster's anchor is its item nearest the centre and carries the cluster's weight."""
    from sklearn.cluster import KMeans  # the clustering tinyBenchmarks uses, with sample weights

    weights = np.asarray(weights, dtype=float)
    k = len(weights)
    if n_anchors >= k:
        return np.arange(k), weights.copy(), np.arange(k)
    points = np.column_stack([model.alpha, model.beta])
    # |w|: a lower-is-better task's items count negatively in the fitness, but as much in the clustering
    km = KMeans(n_clusters=n_anchors, n_init=10, random_state=seed).fit(points, sample_weight=np.abs(weights))
    anchors, anchor_weights, cluster_of = [], [], np.zeros(k, dtype=int)
    for c in range(n_anchors):
        members = np.flatnonzero(km.labels_ == c)
        if not len(members):  # k-means may leave a cluster empty when items coincide
            continue
        cluster_of[members] = len(anchors)
        anchors.append(int(members[np.argmin(((points[members] - km.cluster_centers_[c]) ** 2).sum(axis=1))]))
        anchor_weights.append(float(weights[members].sum()))
    return np.asarray(anchors), np.asarray(anchor_weights), cluster_of


@dataclass(frozen=True)
class AnchorEstimator:
    """Estimates a candidate's per-item scores on the whole subset from its answers on the anchors."""

    model: ItemModel
    weights: np.ndarray  # [K] item weights, summing to 1
    anchors: np.ndarray  # [A] item indices
    anchor_weights: np.ndarray  # [A] cluster weights, summing to 1
    cluster_of: np.ndarray  # [K] which anchor (position in `anchors`) stands for each item
    lam: float  # weight of the anchor estimate in gp-IRT
    loo_error: float  # leave-one-respondent-out RMS error of the estimate (fitness units)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Fresh anchors: one item per cluster, drawn with probability proportional to its weight in the
        cluster, so the anchor estimate is unbiased for the cluster's weighted score (stratified sampling).
        A search that draws them anew each generation cannot climb one fixed anchor set's noise."""
        anchors = np.empty(len(self.anchors), dtype=int)
        for c in range(len(self.anchors)):
            members = np.flatnonzero(self.cluster_of == c)
            share = np.abs(self.weights[members])
            anchors[c] = rng.choice(members, p=share / share.sum()) if share.sum() > 0 else rng.choice(members)
        return anchors

    def predict(self, answers: np.ndarray, anchors: np.ndarray | None = None) -> np.ndarray:
        """Predicted score of every item (the anchors' own answers where observed); `anchors`: one item per
        cluster (`draw`), else the representative ones."""
        anchors = self.anchors if anchors is None else np.asarray(anchors, dtype=int)
        answers = np.asarray(answers, dtype=float)
        theta = fit_ability(self.model, anchors, answers)
        p_irt = self.model.probabilities(theta)
        by_anchor = answers[self.cluster_of]  # each item takes its cluster's anchor answer
        y_hat = self.lam * by_anchor + (1 - self.lam) * p_irt
        y_hat[anchors] = answers
        return y_hat

    def estimate(self, answers: np.ndarray, anchors: np.ndarray | None = None) -> float:
        return float(self.weights @ self.predict(answers, anchors))


def _anchor_and_irt(model: ItemModel, weights: np.ndarray, anchors: np.ndarray, anchor_weights: np.ndarray,
                    answers: np.ndarray) -> tuple[float, float]:
    """(anchor estimate, p-IRT estimate) of one respondent's full-subset fitness from its anchor answers."""
    theta = fit_ability(model, anchors, answers)
    p = model.probabilities(theta)
    p[anchors] = answers
    return float(anchor_weights @ answers), float(weights @ p)


def build_estimator(Y: np.ndarray, weights: np.ndarray, n_anchors: int, dims: int = 2, seed: int = 0) -> AnchorEstimator:
    """Fit the items on the responses Y [N, K], pick `n_anchors` anchors and the gp-IRT mix lam."""
    Y, weights = np.asarray(Y, dtype=float), np.asarray(weights, dtype=float)
    model = fit_items(Y, dims, seed)
    anchors, anchor_weights, cluster_of = choose_anchors(model, weights, n_anchors, seed)
    # Leave one respondent out: refit the items and re-pick the anchors without it, then estimate it from its
    # answers on those anchors (picking anchors with it would flatter the anchor estimate).
    truth, pairs = Y @ weights, []
    for i in range(len(Y)):
        rest = fit_items(np.delete(Y, i, axis=0), dims, seed)
        a, aw, _ = choose_anchors(rest, weights, n_anchors, seed)
        pairs.append(_anchor_and_irt(rest, weights, a, aw, Y[i, a]))
    pairs = np.asarray(pairs)
    errors = [np.sqrt(np.mean((lam * pairs[:, 0] + (1 - lam) * pairs[:, 1] - truth) ** 2)) for lam in LAMBDAS]
    best = int(np.argmin(errors))
    estimator = AnchorEstimator(model=model, weights=weights, anchors=anchors, anchor_weights=anchor_weights,
                                cluster_of=cluster_of, lam=float(LAMBDAS[best]), loo_error=float(errors[best]))
    log.info("IRT estimator: %d items, %d anchors, %d respondents, lam %.1f, leave-one-out RMS error %.4f",
             len(weights), len(anchors), len(Y), estimator.lam, estimator.loo_error)
    return estimator
