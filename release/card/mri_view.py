"""Display values for the card's MRI and health sections, from darwin_genome.json and health.json."""

from __future__ import annotations


def _num(value: float | None) -> str | None:
    return None if value is None else f"{value:.3f}"


def layer_kind_counts(kinds: list[str]) -> dict[str, int]:
    return {k: kinds.count(k) for k in ("father", "mother", "blend")}


def mri_view(genome: dict) -> dict | None:
    """The MRI section: r_MRI beside the final r per layer, tau, the transplant outcome and layer kinds."""
    mri = genome.get("mri")
    if not mri:
        return None
    ratios, kinds = genome["ratios"], genome.get("layer_kinds") or ["blend"] * len(genome["ratios"])
    transplant = genome.get("transplant")
    return {
        "trust": mri.get("trust", False),
        "tau": None if mri.get("tau") is None else _num(mri["tau"]),
        "static_weight": mri.get("static_weight", 0.4),
        "thresholds": mri.get("thresholds"),
        "father_dominant": mri.get("father_dominant", []),
        "mother_dominant": mri.get("mother_dominant", []),
        "kinds": layer_kind_counts(kinds),
        "transplant": transplant and {
            "thresholds": transplant["thresholds"], "kept": transplant["kept"], "reason": transplant["reason"],
            "father_layers": transplant["father_layers"], "mother_layers": transplant["mother_layers"],
            "searched": _num(transplant["searched_fitness"]), "snapped": _num(transplant["snapped_fitness"]),
            "noise": _num(transplant["noise"])},
        "layers": [{"index": i, "r_mri": _num(rm), "ratio": _num(r), "kind": kinds[i],
                    "diagnosis": (f"{'father' if rm < mri['thresholds'][0] else 'mother'}-dominant"
                                  if not mri["thresholds"][0] <= rm <= mri["thresholds"][1] else "")}
                   for i, (rm, r) in enumerate(zip(mri["r_mri"], ratios))],
    }


def health_view(health: dict | None) -> dict | None:
    """The health section: per-layer agreement with both parents, perplexities, the generation check."""
    if not health:
        return None
    return {
        "passed": health["passed"], "reasons": health["reasons"], "flagged": health["flagged_layers"],
        "thresholds": health["thresholds"],
        "perplexity": {k: f"{v:.2f}" for k, v in health["perplexity"].items()},
        "generation": health["generation"],
        "layers": [{"index": row["layer"], "kind": row["kind"], "cos_father": _num(row["cos_father"]),
                    "cos_mother": _num(row["cos_mother"]), "hidden": _num(row["hidden_cos_father"]),
                    "flag": "flagged" if row["flagged"] else ""} for row in health["layers"]],
    }
