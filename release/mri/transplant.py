"""The transplant rule after the search: take a parent's FFN whole where the genome clearly favours it.

A ratio below the low threshold becomes 0 (the father's FFN alone), above the high one 1 (the mother's FFN
alone; this may exceed r_max, which bounds the search, not the snap). The snapped genome's fitness is
measured on the live search model beside the searched genome's (both now, in one process, on the same items),
and the snap is kept only if it loses no more than the search noise: the standard error of the searched
genome's fitness on the search subset, never below NOISE_FLOOR (a fitness that reports none, or 0 as a
benchmark every item of which is answered alike does, would otherwise reject a snap that loses anything).
"""

from __future__ import annotations

import logging

from release.mri.trust import snap

log = logging.getLogger(__name__)

NOISE_FLOOR = 0.005  # half a point of accuracy, or 0.005 nats per token of a calibration text


def transplant(genome: list[float], fitness, thresholds: tuple[float, float], snap_at: list[int] | None = None,
               labels: list | None = None) -> dict:
    """Snap `genome`; measure it and the searched genome with `fitness(genome) -> (value, scores)` side by
    side (the fitness's `stderr` attribute, when it has one, is the noise); keep the snap if it holds up.

    `snap_at`: the genome positions that are shares (None = all, ffn_blend's genome); the others (e.g. a
    TIES density) stay as searched. `labels`: what the record calls each position (None = its index)."""
    low, high = thresholds
    where = range(len(genome)) if snap_at is None else snap_at
    snapped = list(map(float, genome))
    for i, r in zip(where, snap([genome[i] for i in where], low, high)):
        snapped[i] = r
    name = (lambda i: i) if labels is None else (lambda i: labels[i])
    record = {"thresholds": [low, high], "searched_genome": list(genome), "snapped_genome": snapped,
              "father_layers": [name(i) for i, (r, s) in enumerate(zip(genome, snapped)) if s == 0 and r != 0],
              "mother_layers": [name(i) for i, (r, s) in enumerate(zip(genome, snapped)) if s == 1 and r != 1]}
    if snapped == [float(r) for r in genome]:
        return {**record, "searched_fitness": None, "snapped_fitness": None, "noise": None, "scores": None,
                "kept": True, "genome": list(genome), "reason": "no ratio outside the thresholds: nothing to transplant"}
    searched, _ = fitness(list(genome))
    noise = max(float(getattr(fitness, "stderr", None) or 0.0), NOISE_FLOOR)
    value, scores = fitness(snapped)
    kept = value >= searched - noise
    reason = (f"snapped fitness {value:.4f} vs searched {searched:.4f} (noise {noise:.4f}): "
              + ("kept" if kept else "lost beyond the noise, the searched genome ships"))
    log.info("transplant: %s", reason)
    return {**record, "searched_fitness": searched, "snapped_fitness": value, "noise": noise, "scores": scores,
            "kept": kept, "genome": snapped if kept else list(genome), "reason": reason}
