"""The transplant rule after the search: take a parent's FFN whole where the genome clearly favours it.

A ratio below the low threshold becomes 0 (the father's FFN alone), above the high one 1 (the mother's FFN
alone; this may exceed r_max, which bounds the search, not the snap). The snapped genome's fitness is
measured again on the live search model, and the snap is kept only if it loses no more than the search noise:
the standard error of the best candidate's fitness on the search subset (0 when the fitness reports none, so
then any loss at all rejects it).
"""

from __future__ import annotations

import logging

from release.mri.trust import snap

log = logging.getLogger(__name__)


def transplant(genome: list[float], best_fitness: float, fitness, noise: float | None,
               thresholds: tuple[float, float]) -> dict:
    """Snap `genome`, re-measure it with `fitness(genome) -> (value, scores)`, keep it if it holds up."""
    low, high = thresholds
    snapped = snap(genome, low, high)
    noise = float(noise or 0.0)
    record = {"thresholds": [low, high], "searched_genome": list(genome), "snapped_genome": snapped,
              "searched_fitness": best_fitness, "noise": noise,
              "father_layers": [i for i, (r, s) in enumerate(zip(genome, snapped)) if s == 0 and r != 0],
              "mother_layers": [i for i, (r, s) in enumerate(zip(genome, snapped)) if s == 1 and r != 1]}
    if snapped == list(genome):
        return {**record, "snapped_fitness": best_fitness, "scores": None, "kept": True, "genome": list(genome),
                "reason": "no ratio outside the thresholds: nothing to transplant"}
    value, scores = fitness(snapped)
    kept = value >= best_fitness - noise
    reason = (f"snapped fitness {value:.4f} vs searched {best_fitness:.4f} (noise {noise:.4f}): "
              + ("kept" if kept else "lost beyond the noise, the searched genome ships"))
    log.info("transplant: %s", reason)
    return {**record, "snapped_fitness": value, "scores": scores, "kept": kept,
            "genome": snapped if kept else list(genome), "reason": reason}
