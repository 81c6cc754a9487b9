"""The model card of a same-architecture child (`cards/model_card_weights.md.j2`).

Shares the cross-architecture card's inputs, checks and sections (benchmarks, search, leaks) from
release/card/model_card.py; only the genome differs: the method and its paper, per-layer attention and FFN shares,
the norms share and the method's parameters.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from pydantic import Field

from release.card import model_card as base
from release.card import plots
from release.breeders import merge_ops
from release.breeders.mergekit_out import MERGEKIT_FILE, MERGEKIT_VERSION, REPRODUCED
from release.card.mri_view import health_view
from release.errors import ReleaseError
from release.mri.plots import plot_health
from release.run.files import atomic_path

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "cards" / "model_card_weights.md.j2"
BASE_TAGS = ["merge", "evolutionary-merge", "cma-es", "darwin-release"]


class _Paper(base._In):
    title: str
    url: str


class WeightsGenome(base._In):
    """darwin_genome.json of a same-architecture child, as release/breeders/weights.py writes it."""

    method: str
    paper: _Paper
    ratios: dict[str, list[float]]
    density: float | None = None
    dare_rescale: str | None = None  # dare_ties: "inverse_density" or "l1" (absent before it was a choice)
    # the common ancestor the task vectors are taken from ("base" in the record; None: the father)
    ancestor: base._Parent | None = Field(None, alias="base")
    seed: int
    frozen: list[int] = []
    r_max: float = Field(gt=0)
    model_class: str
    search: base._SearchRun
    father: base._Parent
    mother: base._Parent
    tool: base._Tool
    transplant: dict | None = None  # release/mri/transplant.py's record, when genome.transplant was set
    mri: dict | None = None  # the MRI diagnosis and trust (release/mri/weights_trust.py), when it ran


def _genome_view(g: WeightsGenome) -> dict:
    attn, ffn, frozen = g.ratios["attn"], g.ratios["ffn"], set(g.frozen)
    return {
        "method": g.method, "paper": g.paper, "formula": merge_ops.FORMULAS[g.method],
        "seeded": g.method == "dare_ties", "model_class": g.model_class, "n_layers": len(ffn),
        "r_max": f"{g.r_max:g}", "norms": base._num(g.ratios["norms"][0]),
        "density": None if g.density is None else base._num(g.density), "seed": g.seed, "frozen": g.frozen,
        "mean_attn": base._num(sum(attn) / len(attn)), "mean_ffn": base._num(sum(ffn) / len(ffn)),
        "transplant": _transplant_view(g.transplant),
        "rescale": None if g.method != "dare_ties" else _RESCALES[g.dare_rescale or "inverse_density"],
        "mri": g.mri and {"trust": g.mri.get("trust"),
                          "tau": None if g.mri.get("tau") is None else base._num(g.mri["tau"]),
                          "r_mri": ", ".join(base._num(r) for r in g.mri["r_mri"])},
        "layers": [{"index": i, "attn": base._num(a), "ffn": base._num(f), "bar": base._bar(f, g.r_max),
                    "note": "frozen" if i in frozen else ""} for i, (a, f) in enumerate(zip(attn, ffn))],
    }


_RESCALES = {
    "inverse_density": "survivors rescaled by 1 / density (the paper's; `breed.dare_rescale: inverse_density`)",
    "l1": "survivors rescaled to the task vector's L1 norm (mergekit's default; `breed.dare_rescale: l1`)",
}


def _mergekit_view(folder: Path, method: str) -> dict | None:
    """The shipped mergekit_config.yml, for the card's Configuration section (None: a child without one)."""
    path = folder / MERGEKIT_FILE
    if not path.is_file():
        return None
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    return {"yaml": text.strip(), "file": MERGEKIT_FILE, "version": MERGEKIT_VERSION, "reproduced": REPRODUCED[method]}


def _transplant_view(t: dict | None) -> dict | None:
    if not t:
        return None
    num = lambda v: None if v is None else base._num(v)  # noqa: E731  (None: nothing was snapped, nor measured)
    return {"low": t["thresholds"][0], "high": t["thresholds"][1], "kept": t["kept"],
            "father": t["father_layers"], "mother": t["mother_layers"],
            "searched": num(t["searched_fitness"]), "snapped": num(t["snapped_fitness"]), "noise": num(t["noise"])}


def plot_layer_shares(attn: list[float], ffn: list[float], frozen: list[int], r_max: float, path: Path) -> Path:
    """The mother's share of each layer's attention and FFN, side by side (frozen layers marked F)."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style.context("default"):
        fig = Figure(figsize=plots.FIGSIZE, dpi=plots.DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        layers = list(range(len(ffn)))
        ax.bar([i - 0.2 for i in layers], attn, width=0.4, color=plots.FATHER_COLOR, label="attention")
        ax.bar([i + 0.2 for i in layers], ffn, width=0.4, color=plots.MOTHER_COLOR, label="FFN")
        for i in frozen:
            ax.text(i, r_max * 0.02, "F", ha="center", va="bottom", fontsize=7, color=plots.FROZEN_COLOR)
        ax.set_xlim(-0.6, len(ffn) - 0.4)
        ax.set_ylim(0, max([r_max, *attn, *ffn]) * 1.15)  # a transplanted share of 1 may exceed r_max
        ax.set_xlabel("layer")
        ax.set_ylabel("mother share")
        ax.set_title("Genome: mother share per layer (F = frozen at 0)")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        return plots.save_figure(fig, path)


def render_weights_card(config, genome: dict, results: dict | None, search_log: Path | None,
                        out_dir: Path, health: dict | None = None, pipeline_tag: str = "text-generation") -> ModelCard:
    """`health`: the health stage's health.json (None: no health section); `pipeline_tag`: the child's task on
    the Hub (`model_card.child_pipeline_tag`: the father's own, since the child is of his class)."""
    fix = "re-run the stage that wrote it (darwin-release breed / eval)"
    g: WeightsGenome = base._parse(WeightsGenome, genome, "darwin_genome.json", fix)
    r = base._parse(base.Results, results, "results.json", fix) if results is not None else None
    for role in ("father", "mother"):
        bred, named = getattr(g, role).repo, getattr(config, role).repo
        if bred != named:
            raise ReleaseError(f"the genome was bred from {role} {bred} but the config names {named}: "
                               "render the card with the config the child was bred with")
    generations = base._read_search_log(Path(search_log)) if search_log is not None else []
    out_dir = Path(out_dir)
    eval_results = base._eval_results(r) if r is not None else []
    card_data = ModelCardData(
        license=config.card.license, license_name=config.card.license_name, license_link=config.card.license_link,
        base_model=[config.father.repo, config.mother.repo] + ([g.ancestor.repo] if g.ancestor else []),
        base_model_relation="merge", language=list(config.card.languages), library_name="transformers",
        pipeline_tag=pipeline_tag, tags=BASE_TAGS + [g.method] + list(config.card.tags),
        model_name=config.child.repo.split("/")[-1] if eval_results else None, eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE), repo=config.child.repo,
        title=config.child.repo.split("/")[-1], description=config.card.description.strip(),
        father=g.father, mother=g.mother, ancestor=g.ancestor, genome=_genome_view(g), search=base._search_view(g),
        benchmarks=base._benchmarks(r) if r is not None and r.tasks else None,
        calibration=base._calibration(r, g),
        generations=[{"generation": x["generation"], "candidates": x["candidates"], "best": base._num(x["best"]),
                      "mean": base._num(x["mean"])} for x in generations],
        genome_png=base.GENOME_PNG, fitness_png=base.FITNESS_PNG if generations else None,
        genealogy=list(config.card.genealogy.items()),
        health=health_view(health), health_png=base.HEALTH_PNG, mergekit=_mergekit_view(out_dir, g.method),
        citation=(config.card.citation or base._default_citation(config, g)).strip(), tool=g.tool,
        fold_rows=base.FOLD_ROWS,
    )
    base._check_no_leaks(str(card), config, out_dir)  # before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_layer_shares(g.ratios["attn"], g.ratios["ffn"], g.frozen, g.r_max, out_dir / base.GENOME_PNG)
    if generations:
        base.plot_fitness([x["generation"] for x in generations], [x["best"] for x in generations],
                          [x["mean"] for x in generations], out_dir / base.FITNESS_PNG)
    else:
        (out_dir / base.FITNESS_PNG).unlink(missing_ok=True)
    if health:
        plot_health(health["layers"], out_dir / base.HEALTH_PNG, what="layer update")
    else:
        (out_dir / base.HEALTH_PNG).unlink(missing_ok=True)
    with atomic_path(out_dir / "README.md") as tmp:
        card.save(tmp)
    log.info("model card written: README.md, %s", base.GENOME_PNG)
    return card
