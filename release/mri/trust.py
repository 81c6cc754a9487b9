"""From diagnosis to genome: the MRI score, r_MRI, the trust-weighted ratio and the transplant snap.

Darwin V6 states `MRI = 0.4 * static + 0.6 * probe` and `r_MRI = MRI_mother / (MRI_father + MRI_mother)`
per layer, but not what "static" and "probe" are per parent. Our choices (written down in the README too):

- static_p(i): the parent's static score of the FFN layer i uses (`static.py`), divided by that parent's
  mean over the layers used: the two FFNs differ in width, so only relative strength within a parent is
  comparable;
- probe_F(i) = father_share(i) = |f| / |h|, probe_M(i) = mother_share(i) * (1 - cos_distance(i) / 2): the
  mother branch counts as much as it would move the father's residual stream, discounted where it points
  away from what the father's own FFN does there (1 - d/2 = (1 + cos) / 2 is 1 when aligned, 0 when
  opposite). Both are divided by the father's mean share, so the two parents stay on one scale.
"""

from __future__ import annotations

STATIC_WEIGHT = 0.4  # Darwin V6: MRI = 0.4 * static + 0.6 * probe


def mri_scores(static: dict, probe: dict, layer_map: list[int], static_weight: float = STATIC_WEIGHT) -> list[dict]:
    """Per father layer: both parents' static, probe and MRI scores, and r_MRI."""
    n = len(layer_map)
    raw_f = [static["father"][i]["score"] for i in range(n)]
    raw_m = [static["mother"][str(layer_map[i])]["score"] for i in range(n)]
    mean_f, mean_m = sum(raw_f) / n or 1.0, sum(raw_m) / n or 1.0
    layers = probe["layers"]
    probe_f = [layers[i]["father_share"] for i in range(n)]
    probe_m = [layers[i]["mother_share"] * (1 - layers[i]["cos_distance"] / 2) for i in range(n)]
    scale = sum(probe_f) / n or 1.0
    out = []
    for i in range(n):
        s_f, s_m = raw_f[i] / mean_f, raw_m[i] / mean_m
        p_f, p_m = probe_f[i] / scale, probe_m[i] / scale
        mri_f = static_weight * s_f + (1 - static_weight) * p_f
        mri_m = static_weight * s_m + (1 - static_weight) * p_m
        total = mri_f + mri_m
        out.append({"layer": i, "mother_layer": layer_map[i],
                    "static": {"father": s_f, "mother": s_m}, "probe": {"father": p_f, "mother": p_m},
                    "mri": {"father": mri_f, "mother": mri_m}, "r_mri": mri_m / total if total > 0 else 0.5})
    return out


def trust_weighted(tau: float, r_mri: list[float], genome: list[float], r_max: float,
                   frozen: list[int] | set[int]) -> list[float]:
    """clip(tau * r_MRI + (1 - tau) * g, 0, r_max) per layer; frozen layers stay 0."""
    frozen = set(frozen)
    return [0.0 if i in frozen else float(min(max(tau * rm + (1 - tau) * g, 0.0), r_max))
            for i, (rm, g) in enumerate(zip(r_mri, genome))]


def dominance(r: float, low: float, high: float) -> str:
    """Which parent the diagnosis (or a ratio) favours at a layer, by the transplant thresholds."""
    return "father" if r < low else "mother" if r > high else "both"


def snap(ratios: list[float], low: float, high: float) -> list[float]:
    """The transplant rule: a ratio below `low` becomes 0 (father FFN whole), above `high` 1 (mother FFN whole)."""
    return [0.0 if r < low else 1.0 if r > high else float(r) for r in ratios]
