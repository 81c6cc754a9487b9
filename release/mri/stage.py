"""The pipeline's MRI pieces, called by `release.pipeline`: the `mri` stage, the breed-time hooks (r_MRI for
the genome space, the transplant after the search, the records they leave) and the `health` stage."""

from __future__ import annotations

import time
from pathlib import Path

from release.config import ReleaseConfig
from release.mri.transplant import transplant
from release.mri.trust import dominance
from release.run.files import write_json
from release.run.records import Bred, Diagnosis, Emitted, Health, Pulled
from release.search.start import one_at_a_time

DEFAULT_THRESHOLDS = (0.15, 0.85)  # Darwin V6's transplant thresholds; also where the diagnosis marks dominance


def thresholds(config: ReleaseConfig) -> tuple[float, float]:
    return tuple(config.genome.transplant or DEFAULT_THRESHOLDS)


def _device(config: ReleaseConfig):
    from release.device import pick_device, pick_dtype  # imports torch

    device = pick_device(config.search.device)
    return device, pick_dtype(config.search.dtype, device)


def stage_mri(config: ReleaseConfig, pulled: Pulled) -> tuple[Diagnosis, list[Path]]:
    from release.mri.scan import MRI_JSON, run_mri  # imports torch and transformers

    device, dtype = _device(config)
    out = config.run_dir / "mri"
    if config.breed.method != "ffn_blend":
        return _stage_mri_same_arch(config, pulled, out, device, dtype)
    result = run_mri(Path(pulled.father.path), Path(pulled.mother.path), out,
                     layer_map=config.genome.layer_map, frozen=config.genome.frozen, thresholds=thresholds(config),
                     per_domain=config.mri.prompts_per_domain, seed=config.search.seed, device=device, dtype=dtype,
                     bins=config.mri.histogram_bins, static_weight=config.mri.static_weight)
    return _diagnosis(out / MRI_JSON, result), [out / MRI_JSON]


def _diagnosis(path: Path, result: dict) -> Diagnosis:
    keep = ("r_mri", "father_dominant", "mother_dominant", "thresholds", "static_weight", "seconds")
    return Diagnosis(path=str(path), **{k: result[k] for k in keep})


def _stage_mri_same_arch(config: ReleaseConfig, pulled: Pulled, out: Path, device,
                         dtype) -> tuple[Diagnosis, list[Path]]:
    from release.mri.scan import MRI_JSON  # imports torch and transformers
    from release.mri.weights_trust import scan_same_arch  # imports torch

    started = time.monotonic()
    low, high = thresholds(config)
    layers = scan_same_arch(Path(pulled.father.path), Path(pulled.mother.path),
                            per_domain=config.mri.prompts_per_domain, seed=config.search.seed, device=device,
                            dtype=dtype, bins=config.mri.histogram_bins, static_weight=config.mri.static_weight)
    r_mri = [row["r_mri"] for row in layers]
    result = {"r_mri": r_mri, "layers": layers, "thresholds": [low, high], "static_weight": config.mri.static_weight,
              "father_dominant": [i for i, r in enumerate(r_mri) if dominance(r, low, high) == "father"],
              "mother_dominant": [i for i, r in enumerate(r_mri) if dominance(r, low, high) == "mother"],
              "seconds": round(time.monotonic() - started, 3)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MRI_JSON, result)
    return _diagnosis(out / MRI_JSON, result), [out / MRI_JSON]


def search_r_mri(config: ReleaseConfig, mri: Diagnosis | None) -> list[float] | None:
    """r_MRI for the genome space when `genome.mri` is on (the search then also learns tau), else None."""
    return mri.r_mri if config.genome.mri and mri else None


def search_fingerprint(config: ReleaseConfig, mri: Diagnosis | None) -> dict:
    """The genome part of the search checkpoint's fingerprint. The transplant acts after the search, and
    without `genome.mri` the MRI settings do not touch it: both stay out, so such checkpoints still resume."""
    genome = config.genome.model_dump(exclude={"transplant", "mri", "mri_trust_init"})
    if config.genome.mri:
        genome |= {"mri": True, "mri_trust_init": config.genome.mri_trust_init, "r_mri": search_r_mri(config, mri)}
    return genome


def after_search(config: ReleaseConfig, genome: list[float], tau: float | None, evaluation,
                 mri: Diagnosis | None, names: list[str] | None = None) -> dict:
    """What the breed stage records beyond the search: tau, r_MRI, and the transplant outcome (which may
    change the genome that ships). `names`: the genome's gene names; the breeder says which are shares."""
    from release.breeders import get_breeder  # imports torch

    record = {"searched_genome": list(genome), "tau": tau, "mri_trust": bool(config.genome.mri),
              "r_mri": mri.r_mri if mri else None, "transplant": None, "genome": list(genome)}
    if config.genome.transplant:
        snap_at = get_breeder(config.breed.method).transplant_genes(names) if names else None
        record["transplant"] = transplant(genome, one_at_a_time(evaluation), thresholds(config), snap_at=snap_at,
                                          labels=None if snap_at is None else names)
        record["genome"] = record["transplant"]["genome"]
    return record


def genome_mri_record(bred: dict, mri: dict | None) -> dict:
    """The `mri` and `transplant` entries of darwin_genome.json (what the card's MRI section renders), from
    the breed and mri records in their run-folder JSON form (as breeders read them)."""
    out = {}
    if mri:
        out["mri"] = {"trust": bred.get("mri_trust", False), "tau": bred.get("tau"), "r_mri": mri["r_mri"],
                      "thresholds": mri["thresholds"], "static_weight": mri["static_weight"],
                      "father_dominant": mri["father_dominant"], "mother_dominant": mri["mother_dominant"]}
    if bred.get("transplant"):
        out["transplant"] = {k: v for k, v in bred["transplant"].items() if k != "scores"}
    return out


def stage_health(config: ReleaseConfig, pulled: Pulled, child: Emitted) -> tuple[Health, list[Path]]:
    from release.mri.health import HEALTH_JSON, HEALTH_PNG  # imports torch and matplotlib

    device, dtype = _device(config)
    out = config.run_dir / "health"
    genome = child.genome
    text = config.fitness.calibration_text.read_text(encoding="utf-8") if config.fitness.calibration_text else None
    if config.breed.method != "ffn_blend":  # a weight merge: three stock models, compared layer by layer
        from release.mri.weights_health import weights_health_check  # imports torch

        result = weights_health_check(Path(child.path), Path(pulled.father.path), Path(pulled.mother.path), out, config.health, genome["ratios"],
                                      device=device, dtype=dtype, per_domain=config.mri.prompts_per_domain,
                                      seed=config.search.seed, calibration_text=text)
        return _health(out, result), [out / HEALTH_JSON, out / HEALTH_PNG]
    from release.mri.health import health_check  # builds the live hybrid: torch

    result = health_check(Path(child.path), Path(pulled.father.path), Path(pulled.mother.path), out,
                          config.health, genome["layer_map"], genome["ratios"], device=device, dtype=dtype,
                          per_domain=config.mri.prompts_per_domain, seed=config.search.seed,
                          calibration_text=text)
    return _health(out, result), [out / HEALTH_JSON, out / HEALTH_PNG]


def _health(out: Path, result: dict) -> Health:
    from release.mri.health import HEALTH_JSON  # imports torch and matplotlib

    return Health(path=str(out / HEALTH_JSON), passed=result["passed"], reasons=result["reasons"],
                  flagged_layers=result["flagged_layers"])


def check_before_push(config: ReleaseConfig, health: Health | None, force: set[str]) -> None:
    """A failed health check stops the release before push, unless --force push or health.stop_on_failure: false."""
    from release.mri.health import require_healthy  # imports torch and matplotlib

    if health and config.health.stop_on_failure and "push" not in force:
        require_healthy(health.to_json(), Path(health.path))


def mri_summary(bred: Bred, child: Emitted, health: Health | None) -> dict:
    """release.json's MRI entries: tau, r_MRI, what was transplanted, the layer kinds and the health verdict."""
    moved = bred.transplant
    return {
        "tau": bred.tau, "r_mri": bred.r_mri, "searched_genome": bred.searched_genome,
        "transplant": moved and {k: moved[k] for k in ("kept", "father_layers", "mother_layers", "reason")},
        "layer_kinds": child.genome.get("layer_kinds"),
        "health": health and {"passed": health.passed, "flagged_layers": health.flagged_layers,
                              "reasons": health.reasons},
    }
