"""The child's model card, rendered from `cards/model_card.md.j2` with the run's own results.

Front matter is a typed `huggingface_hub.ModelCardData` (the library writes `model-index` from
`EvalResult`s); the body is the Jinja template, filled from the genome the emitter wrote, the final
evaluation's results and the search log, so every number in the card can be traced to a file of the run.
Python here only validates the inputs and turns them into display values; the layout lives in the template.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modeling.configuration_darwin import TRANSFORMERS_VERSION
from release.card.mri_view import health_view, mri_view
from release.card.plots import plot_fitness, plot_genome
from release.config import ReleaseConfig, local_paths
from release.errors import ReleaseError
from release.mri.plots import plot_health, plot_mri
from release.run.files import atomic_path

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "cards" / "model_card.md.j2"
GENOME_PNG = "genome.png"
FITNESS_PNG = "fitness.png"
MRI_PNG = "mri.png"
HEALTH_PNG = "health.png"
BASE_TAGS = ["merge", "evolutionary-merge", "cross-architecture", "cma-es", "gemma4", "qwen3.5",
             "custom_code", "darwin-release"]
TASK_LABELS = {"click": "CLIcK", "musr": "MuSR", "synthetic": "Synthetic"}
BAR_WIDTH = 20  # characters of a full bar (r = r_max) in the genome table
FOLD_ROWS = 12  # a per-layer table longer than this is folded in <details> (Genesis: 42 layers)
_EIGHTHS = " ▏▎▍▌▋▊▉"
_TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")  # user access tokens: hf_ + 34
_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN", "HF_API_TOKEN")


# ---- inputs: the files other stages write (extra keys are allowed, missing ones are errors) ----

class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Parent(_In):
    repo: str
    revision: str


class _Estimator(_In):
    estimator: str
    items: int
    candidates: int
    tokens_scored: int
    tokens_full: int
    anchors: int | None = None
    calibration_genomes: int | None = None
    max_items: int | None = None  # race: the most items a candidate answered in a generation
    child_from: str | None = None  # "mean" (the search's final mean) or "elite"


class _SearchFitness(_In):
    kind: str
    tasks: dict[str, float] = {}
    search_items: dict[str, int] = {}
    scorer: str | None = None
    calibration: dict | None = None  # kind calibration: what was scored (mode, chunk, tokens per split)
    estimator: _Estimator | None = None  # fitness.estimator irt / race (absent: full scoring)


class _SearchRun(_In):
    popsize: int
    sigma0: float
    seed: int
    generations: int
    evaluations: int
    seconds: float | None = None  # older records: the card leaves wall time out (it must be reproducible)
    best_fitness: float
    stop_reason: str
    device: str
    dtype: str
    fitness: _SearchFitness


class _Tool(_In):
    name: str = "darwin-release"
    version: str


class Genome(_In):
    """darwin_genome.json, as the emitter writes it."""

    ratios: list[float] = Field(min_length=1)
    frozen: list[int] = []
    layer_map: list[int]
    r_max: float = Field(gt=0)
    mixing_rule: str
    mixing_formula: str
    search: _SearchRun
    father: _Parent
    mother: _Parent
    tool: _Tool

    @model_validator(mode="after")
    def _consistent(self) -> Genome:
        n = len(self.ratios)
        if len(self.layer_map) != n:
            raise ValueError(f"layer_map has {len(self.layer_map)} entries for {n} ratios")
        if any(not 0 <= i < n for i in self.frozen):
            raise ValueError(f"frozen layers {self.frozen} are outside 0-{n - 1}")
        if any(not (0 <= r <= self.r_max + 1e-9 or r == 1) for r in self.ratios):  # 1: a transplanted layer
            raise ValueError(f"every ratio must lie in [0, r_max={self.r_max}] or be 1 (a transplanted layer)")
        if any(self.ratios[i] != 0 for i in self.frozen):
            raise ValueError("a frozen layer has a non-zero ratio")
        return self


class _Score(_In):
    value: float
    stderr: float | None = None


class _Calibration(_In):
    value: float
    stderr: float | None = None
    tokens: int


class _ModelScores(_In):
    scores: dict[str, _Score] = {}
    fitness: _Score | None = None  # None: no benchmark task was evaluated
    calibration: _Calibration | None = None  # the calibration text's held-out part


class _Models(_In):
    child: _ModelScores
    father: _ModelScores
    mother: _ModelScores


class _TaskInfo(_In):
    weight: float = Field(gt=0)
    metric: str
    n: int
    dataset: str | None = None
    # Written since lm-eval tasks of any kind are accepted (older results.json files lack them).
    dataset_config: str | None = None
    split: str | None = None
    num_fewshot: int | None = None
    search_n: int | None = None
    filter: str = "none"
    higher_is_better: bool = True


class Results(_In):
    """results.json, as the final evaluation writes it."""

    split: str
    tasks: dict[str, _TaskInfo] = {}
    models: _Models
    lm_eval_version: str | None = None  # set when lm-eval's results files were written (eval_results/)

    @model_validator(mode="after")
    def _every_model_scored_every_task(self) -> Results:
        for who in ("child", "father", "mother"):
            missing = sorted(set(self.tasks) - set(getattr(self.models, who).scores))
            if missing:
                raise ValueError(f"models.{who} has no score for tasks {missing}")
        return self


def _parse(model: type[_In], data: dict, what: str, fix: str) -> _In:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        where = f"{loc}: " if loc else ""
        raise ReleaseError(f"{what}: {where}{first['msg']}; {fix}") from None


# ---- display values ----

def _num(value: float) -> str:
    return f"{value:.3f}"


def _score(s: _Score) -> str:
    return f"{_num(s.value)} ± {_num(s.stderr)}" if s.stderr is not None else f"{_num(s.value)} ± n/a"


def _weights(weights: dict[str, float]) -> dict[str, str]:
    """Task weights as the fitness uses them: normalised to sum 1."""
    total = sum(weights.values())
    return {name: f"{w / total:.3g}" for name, w in weights.items()}


def _bar(ratio: float, r_max: float) -> str:
    """Text bar proportional to ratio / r_max, in eighths of a character, padded to BAR_WIDTH."""
    eighths = round(ratio / r_max * BAR_WIDTH * 8)
    full, part = divmod(min(eighths, BAR_WIDTH * 8), 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(BAR_WIDTH)


def hybrid_vigor(child, father, mother) -> dict:
    """Hybrid vigor: child - parent > sqrt(se_child^2 + se_parent^2) for BOTH parents (each score has .value
    and .stderr). The card states it, and so does the run's closing summary."""
    margins = {}
    for name, parent in (("father", father), ("mother", mother)):
        if child.stderr is None or parent.stderr is None:
            return {"claimed": False, "reason": "a standard error is missing", "margins": {}}
        combined = math.hypot(child.stderr, parent.stderr)
        diff = child.value - parent.value
        margins[name] = {"diff": _num(diff), "combined": _num(combined), "cleared": diff > combined}
    claimed = all(m["cleared"] for m in margins.values())
    below = [n for n, m in margins.items() if not m["cleared"]]
    reason = "" if claimed else ("the child does not beat the " + " or the ".join(below)
                        + " by more than the combined standard error")
    return {"claimed": claimed, "reason": reason, "margins": margins}


def _benchmarks(results: Results) -> dict:
    models = results.models
    rows = []
    for name, task in results.tasks.items():
        rows.append({
            "label": TASK_LABELS.get(name, name), "n": task.n,
            "metric": task.metric if task.filter == "none" else f"{task.metric} ({task.filter})",
            "dataset": task.dataset or ("built-in" if name == "synthetic" or name.startswith("zoo_") else "local records"),
            "child": _score(models.child.scores[name]), "father": _score(models.father.scores[name]),
            "mother": _score(models.mother.scores[name]),
        })
    weights = " + ".join(f"{w} × {TASK_LABELS.get(n, n)}"
                         for n, w in _weights({n: t.weight for n, t in results.tasks.items()}).items())
    return {
        "split": results.split, "rows": rows, "weights": weights,
        "lower_is_better": [TASK_LABELS.get(n, n) for n, t in results.tasks.items() if not t.higher_is_better],
        "lm_eval_files": bool(results.lm_eval_version),
        "fitness": {"child": _score(models.child.fitness), "father": _score(models.father.fitness),
                    "mother": _score(models.mother.fitness)},
        "vigor": hybrid_vigor(models.child.fitness, models.father.fitness, models.mother.fitness),
    }


LM_EVAL_URL = "https://github.com/EleutherAI/lm-evaluation-harness"


def _calibration_facts(facts: dict | None) -> str | None:
    """One line on what a calibration search optimised, or None for a benchmark search."""
    if not facts:
        return None
    held = f"; {facts['heldout_tokens']:,} tokens held out for the card" if facts.get("heldout_tokens") else ""
    return (f"mean log-likelihood per token of {facts['source']} ({facts['mode']}): {facts['search_tokens']:,} "
            f"tokens scored, in chunks of {facts['chunk_tokens']}{held}")


def _calibration(results: Results | None, genome: Genome) -> dict | None:
    """The calibration text's held-out part, scored for each model (None when it was not scored)."""
    models = results and results.models
    if not models or models.child.calibration is None:
        return None
    row = {role: getattr(models, role).calibration for role in ("child", "father", "mother")}
    return {"what": _calibration_facts(genome.search.fitness.calibration) or "calibration text",
            "tokens": row["child"].tokens,
            **{role: "n/a" if c is None else f"{_score(c)} ({c.tokens:,} tokens)" for role, c in row.items()}}


def _eval_results(results: Results) -> list[EvalResult]:
    """One model-index entry per task that names a Hub dataset: the child's held-out score, with the
    dataset's config, split and few-shot, and a source saying the search tuned on a disjoint split of it."""
    out = []
    for name, task in results.tasks.items():
        if not task.dataset:
            log.info("task %s has no Hub dataset id: shown in the card, left out of model-index", name)
            continue
        searched = f"{task.search_n} other items" if task.search_n else "other items"
        metric = task.metric if task.filter == "none" else f"{task.metric} ({task.filter})"
        out.append(EvalResult(
            task_type="text-generation", task_name="Text Generation",
            dataset_type=task.dataset, dataset_name=f"{TASK_LABELS.get(name, name)} (held-out, {task.n} items)",
            dataset_config=task.dataset_config, dataset_split=task.split,
            dataset_args={"num_few_shot": task.num_fewshot} if task.num_fewshot is not None else None,
            metric_type=task.metric, metric_value=results.models.child.scores[name].value,
            metric_name=metric, verified=False,
            source_name=(f"darwin-release final evaluation with lm-evaluation-harness: the search tuned the child "
                         f"on {searched} of this benchmark (its search split); this value is on the "
                         f"{task.n} disjoint held-out items (eval_results/ in this repo)"),
            source_url=LM_EVAL_URL,
        ))
    return out


def _read_search_log(path: Path) -> list[dict]:
    """Per generation: number of candidates, best and mean fitness (JSONL, one line per candidate)."""
    if not path.is_file():
        raise ReleaseError(f"search log {path.name} not found: pass the candidates.jsonl the search wrote, or none")
    by_gen: dict[int, list[float]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            generation, fitness = int(entry["generation"]), entry["fitness"]
        except (ValueError, KeyError, TypeError):
            raise ReleaseError(f"search log {path.name} line {number}: expected JSON with generation and fitness; "
                               "pass the candidates.jsonl the search wrote") from None
        if fitness is not None and math.isfinite(fitness):
            by_gen.setdefault(generation, []).append(float(fitness))
    return [{"generation": g, "candidates": len(v), "best": max(v), "mean": sum(v) / len(v)}
            for g, v in sorted(by_gen.items())]


def _genome_view(genome: Genome) -> dict:
    ratios, frozen = genome.ratios, set(genome.frozen)
    mixed = [i for i, r in enumerate(ratios) if r > 0]
    top = max(range(len(ratios)), key=lambda i: ratios[i])
    return {
        "n_layers": len(ratios), "n_mixed": len(mixed), "r_max": f"{genome.r_max:g}",
        "mean": _num(sum(ratios) / len(ratios)), "max": _num(ratios[top]), "max_layer": top,
        "frozen": genome.frozen, "mother_ffns": len({genome.layer_map[i] for i in mixed}),
        "layers": [{"index": i, "mother": genome.layer_map[i], "ratio": _num(r), "bar": _bar(r, genome.r_max),
                    "note": "frozen" if i in frozen else ("father only" if r == 0 else "")}
                   for i, r in enumerate(ratios)],
        "mixing_rule": genome.mixing_rule, "mixing_formula": genome.mixing_formula,
    }


def _search_view(genome: Genome) -> dict:
    s = genome.search
    tasks = [{"label": TASK_LABELS.get(n, n), "weight": w, "n_items": s.fitness.search_items.get(n)}
             for n, w in _weights(s.fitness.tasks).items()]
    return {
        "popsize": s.popsize, "sigma0": f"{s.sigma0:g}", "seed": s.seed, "generations": s.generations,
        "evaluations": s.evaluations, "best_fitness": _num(s.best_fitness),
        "stop_reason": s.stop_reason, "device": s.device, "dtype": s.dtype, "kind": s.fitness.kind,
        "scorer": s.fitness.scorer, "tasks": tasks, "estimator": _estimator_line(s.fitness.estimator),
        "calibration": _calibration_facts(s.fitness.calibration),
    }


def _estimator_line(e: _Estimator | None) -> str | None:
    """One line for the card: which estimator ranked the candidates, on how many items, and the tokens it took."""
    if e is None:
        return None
    if e.estimator == "irt":
        how = (f"IRT: each generation answered {e.anchors} anchor items of {e.items}, one drawn per cluster of alike "
               f"items, after {e.calibration_genomes} calibration genomes answered all of them")
    else:
        budget = f"at most {e.max_items} of" if e.max_items and e.max_items < e.items else ""
        how = (f"racing: each generation answered {budget} its {e.items} items until the candidates' ranks were "
               "settled").replace("  ", " ")
    child = {"mean": "the child is the search's final mean, scored in full",
             "elite": "the child chosen by full scoring among the search's final mean and the best estimates"}.get(
        e.child_from, "the child chosen by full scoring among the best estimates")
    saved = f"{e.tokens_full / e.tokens_scored:.1f}x fewer" if e.tokens_scored else "none"
    return (f"{how}; {child}; {e.tokens_scored:,} tokens scored "
            f"vs {e.tokens_full:,} for full scoring of its {e.candidates} candidates ({saved})")


def _default_citation(config: ReleaseConfig, genome: Genome) -> str:
    """BibTeX for the tool that bred the child, used when the config gives no citation."""
    return ("@software{darwin_release,\n"
            "  title   = {darwin-release: evolutionary cross-architecture merging of language models},\n"
            f"  version = {{{genome.tool.version}}},\n"
            f"  note    = {{Used to breed {config.child.repo} from {config.father.repo} and {config.mother.repo}}}\n"
            "}")


# ---- leaks: nothing secret or local may reach a public card ----

def _local_strings(config: ReleaseConfig, out_dir: Path) -> list[str]:
    out = {str(Path(out_dir).expanduser().resolve())} | ({str(out_dir)} if Path(out_dir).is_absolute() else set())
    return sorted(set(local_paths(config)) | {p for p in out if len(p) > 1})


def _check_no_leaks(text: str, config: ReleaseConfig, out_dir: Path) -> None:
    """Refuse to write a card that holds a token or a local path (the message never repeats them)."""
    tokens = [os.environ[k] for k in _TOKEN_ENV if len(os.environ.get(k, "")) >= 8]
    if _TOKEN.search(text) or any(t in text for t in tokens):
        raise ReleaseError("the model card would contain a Hugging Face token: remove it from the config's "
                           "card fields (description, genealogy, citation, tags)")
    for local in _local_strings(config, out_dir) + ["/tmp/"]:
        if re.search(re.escape(local) + r"(?![\w.-])", text):
            raise ReleaseError("the model card would contain a local path: remove it from the config's "
                               "card fields (description, genealogy, citation, tags)")


# ---- the card ----

def _architectures(folder: Path) -> list[str]:
    try:
        return list(json.loads((Path(folder) / "config.json").read_text()).get("architectures") or [])
    except (OSError, ValueError):
        return []


def child_pipeline_tag(father_tag: str | None, father_dir: Path, child_dir: Path) -> str:
    """The child's `pipeline_tag`: the father's own (from his card) when the child is of his class, else by the
    child's architecture (a `...ForConditionalGeneration` Gemma 4 takes images and text; a `...ForCausalLM`,
    the cross-architecture child included, generates text)."""
    child = _architectures(child_dir)
    if father_tag and child and child == _architectures(father_dir):
        return father_tag
    if any(name.endswith("ForConditionalGeneration") for name in child):
        return "image-text-to-text"
    return "text-generation"


def render_model_card(config: ReleaseConfig, genome: dict, results: dict | None, search_log: Path | None,
                      out_dir: Path, health: dict | None = None, pipeline_tag: str = "text-generation") -> ModelCard:
    """Render the child's model card into out_dir/README.md (+ genome.png, fitness.png) and return it.

    `genome` is darwin_genome.json, `results` the final evaluation's results.json (None when the
    evaluation was skipped: no benchmark table, no model-index), `search_log` the search's JSONL of
    candidates (None: no fitness chart), `health` the health stage's health.json (None: no health section),
    `pipeline_tag` the child's task on the Hub (`child_pipeline_tag`).
    The MRI section comes from the genome's own `mri` and `transplant` records.
    """
    fix = "re-run the stage that wrote it (darwin-release breed / eval)"
    g: Genome = _parse(Genome, genome, "darwin_genome.json", fix)
    r: Results | None = _parse(Results, results, "results.json", fix) if results is not None else None
    for role in ("father", "mother"):
        bred, named = getattr(g, role).repo, getattr(config, role).repo
        if bred != named:
            raise ReleaseError(f"the genome was bred from {role} {bred} but the config names {named}: "
                               "render the card with the config the child was bred with")
    generations = _read_search_log(Path(search_log)) if search_log is not None else []

    out_dir = Path(out_dir)
    eval_results = _eval_results(r) if r is not None else []
    card_data = ModelCardData(
        license=config.card.license, license_name=config.card.license_name, license_link=config.card.license_link,
        base_model=[config.father.repo, config.mother.repo],
        base_model_relation="merge",
        language=list(config.card.languages),
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=BASE_TAGS + list(config.card.tags),
        model_name=config.child.repo.split("/")[-1] if eval_results else None,
        eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        repo=config.child.repo,
        title=config.child.repo.split("/")[-1],
        description=config.card.description.strip(),
        father=g.father, mother=g.mother,
        genome=_genome_view(g),
        search=_search_view(g),
        benchmarks=_benchmarks(r) if r is not None and r.tasks else None,
        calibration=_calibration(r, g),
        generations=[{"generation": x["generation"], "candidates": x["candidates"], "best": _num(x["best"]),
                      "mean": _num(x["mean"])} for x in generations],
        genome_png=GENOME_PNG,
        fitness_png=FITNESS_PNG if generations else None,
        mri=mri_view(genome), mri_png=MRI_PNG,
        health=health_view(health), health_png=HEALTH_PNG,
        genealogy=list(config.card.genealogy.items()),
        citation=(config.card.citation or _default_citation(config, g)).strip(),
        tool=g.tool,
        transformers_version=TRANSFORMERS_VERSION,  # what the shipped modeling files require
        fold_rows=FOLD_ROWS,
    )
    _check_no_leaks(str(card), config, out_dir)  # before anything is written

    out_dir.mkdir(parents=True, exist_ok=True)
    plot_genome(g.ratios, g.frozen, g.r_max, out_dir / GENOME_PNG)
    if generations:
        plot_fitness([x["generation"] for x in generations], [x["best"] for x in generations],
                     [x["mean"] for x in generations], out_dir / FITNESS_PNG)
    else:
        (out_dir / FITNESS_PNG).unlink(missing_ok=True)  # a stale chart from an older run would mislead
    mri = genome.get("mri")
    if mri:
        low, high = mri["thresholds"]
        plot_mri(mri["r_mri"], g.ratios, g.frozen, low, high, out_dir / MRI_PNG)
    if health:
        plot_health(health["layers"], out_dir / HEALTH_PNG)
    for chart, drawn in ((MRI_PNG, mri), (HEALTH_PNG, health)):
        if not drawn:
            (out_dir / chart).unlink(missing_ok=True)
    with atomic_path(out_dir / "README.md") as tmp:
        card.save(tmp)
    log.info("model card written: README.md, %s%s", GENOME_PNG, f", {FITNESS_PNG}" if generations else "")
    return card
