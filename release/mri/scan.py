"""The `mri` stage: static and probe MRI of both parents -> per-layer r_MRI, written to runs/<name>/mri/.

mri.json holds the raw statistics (per tensor, per domain), the per-layer scores and r_MRI, and which layers
the diagnosis marks father- or mother-dominant (by the transplant thresholds). The search reads r_MRI from it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from release.run.files import write_json
from release.breeders.hybrid import build_hybrid, make_child_config
from release.mri.mother_ffn import load_mother_ffn
from release.mri.plots import plot_mri
from release.mri.probe import probe_run
from release.mri.prompts import prompts_license
from release.mri.static import DEFAULT_BINS, static_scan
from release.mri.trust import STATIC_WEIGHT, dominance, mri_scores

log = logging.getLogger(__name__)

MRI_JSON = "mri.json"
MRI_PNG = "mri.png"


def run_mri(father_dir: Path, mother_dir: Path, out: Path, layer_map: list[int] | None = None,
            frozen: list[int] = (), thresholds: tuple[float, float] = (0.15, 0.85),
            per_domain: int | None = None, seed: int = 0, device="cpu", dtype=None,
            bins: int = DEFAULT_BINS, static_weight: float = STATIC_WEIGHT) -> dict:
    """Scan both parents; write out/mri.json and out/mri.png; return the mri.json content.

    It streams: the father alone (a Darwin hybrid holding no mother FFN) plus one mother FFN at a time, never
    the whole search hybrid; the static scan reads one tensor at a time."""
    import torch
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    dtype = dtype or torch.float32
    config = make_child_config(father_dir, mother_dir, ratios=None, layer_map=layer_map, stored="active")
    model = build_hybrid(father_dir, mother_dir, config, device=device, dtype=dtype)
    layer_map = list(model.config.layer_map)
    static = static_scan(father_dir, mother_dir, layer_map, bins)
    t_static = time.perf_counter()
    probe = probe_run(model, AutoTokenizer.from_pretrained(father_dir),
                      lambda i: load_mother_ffn(mother_dir, config, layer_map[i], device, dtype), per_domain, seed)
    del model
    t_probe = time.perf_counter()
    layers = mri_scores(static, probe, layer_map, static_weight)
    low, high = thresholds
    for row in layers:
        row["frozen"] = row["layer"] in set(frozen)
        row["dominant"] = dominance(row["r_mri"], low, high)
    r_mri = [row["r_mri"] for row in layers]
    result = {
        "r_mri": r_mri,
        "layers": layers,
        "father_dominant": [r["layer"] for r in layers if r["dominant"] == "father"],
        "mother_dominant": [r["layer"] for r in layers if r["dominant"] == "mother"],
        "thresholds": [low, high],
        "static_weight": static_weight,
        "static": static,
        "probe": probe,
        "prompts": {"per_domain": per_domain, "seed": seed, "license": prompts_license()},
        "seconds": {"build_and_static": round(t_static - t0, 3), "probe": round(t_probe - t_static, 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MRI_JSON, result)
    plot_mri(r_mri, None, list(frozen), low, high, out / MRI_PNG)
    log.info("MRI: r_MRI %s; father-dominant %s, mother-dominant %s", [round(r, 3) for r in r_mri],
             result["father_dominant"], result["mother_dominant"])
    return result
