"""Final evaluation: child, father and mother on the same held-out items, written for the model card.

Models are loaded one at a time with `AutoModelForCausalLM` (which maps the parents'
ConditionalGeneration checkpoints to a class that loads every text weight) and freed before the next.
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import torch

from release.device import pick_device, pick_dtype, tune_cpu_threads
from release.evals.evaluator import Evaluator, weighted_fitness
from release.evals.lm_eval_results import EVAL_RESULTS, env_info, read_scores, start_tracker, write_results
from release.run.files import write_json
from release.evals.suite import TaskSuite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    path: Path  # local folder (a Hub snapshot or the emitted child)
    repo: str  # Hub id shown in the card
    revision: str | None = None  # resolved commit (40 hex) for the parents, None for the child
    trust_remote_code: bool = False  # True for the child (custom modeling files)
    text_only: bool = False  # the pull skipped the vision/audio towers: build the model without them


# Sub-configs of multimodal checkpoints whose towers a text-only model does not build.
TOWERS = ("vision_config", "audio_config")


def load_model(spec: ModelSpec, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
    extra = {}
    if spec.text_only:  # else transformers builds the towers, fills them at random and prints each as MISSING
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
        for tower in TOWERS:
            if getattr(config, tower, None) is not None:
                setattr(config, tower, None)
        extra["config"] = config
    model = AutoModelForCausalLM.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code, dtype=dtype,
                                                 **extra)
    model = model.to(device).eval()
    tune_cpu_threads(model)
    return model, tokenizer


def evaluate_models(models: dict[str, ModelSpec], suite: TaskSuite | None, out_path: str | Path, scorer: str = "fast",
                    batch_size: int = 8, device: str = "auto", dtype: str = "auto", progress: bool = True,
                    max_gen_toks: int | None = None, log_samples: bool = False,
                    calibration: Callable | None = None) -> dict:
    """Score every model on the held-out split; write lm-eval's results JSON per model (eval_results/ beside
    `out_path`) and results.json (atomically), whose scores are read back from lm-eval's files; return it.

    `suite`: the benchmark tasks (None: none). `calibration(tokenizer)`: the calibration text's records for
    that tokenizer (`CalibrationSet`), whose held-out share is scored too (None: not scored)."""
    start = time.perf_counter()
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    out_path = Path(out_path)
    folder = out_path.parent / EVAL_RESULTS
    if folder.exists():
        shutil.rmtree(folder)  # files of an earlier evaluation (another child repo name) must not stay
    tasks = suite.tasks if suite else []
    results = {
        "split": "heldout",
        "tasks": {t.name: _task_record(t) for t in tasks},
        "models": {},
        "scorer": scorer,
        "subsets_fingerprint": suite and suite.fingerprint,
        "lm_eval_version": version("lm_eval"),
    }
    env = env_info()
    wanted = {name: {"target": t["target"], "metric": t["metric"], "filter": t.get("filter", "none")}
              for name, t in results["tasks"].items()}
    weights = {t.name: t.weight for t in tasks}
    signs = {t.name: 1 if t.bench.higher_is_better else -1 for t in tasks}
    for name, spec in models.items():  # no bar of its own: it would overprint the loading and scoring bars
        model, tokenizer = load_model(spec, dev, torch_dtype)
        t0 = time.perf_counter()
        entry = results["models"][name] = {"repo": spec.repo, "revision": spec.revision, "scores": {}}
        evaluator = None
        if suite:
            tracker = start_tracker()
            evaluator = Evaluator(model, tokenizer, suite, split="heldout", scorer=scorer, batch_size=batch_size,
                                  progress=progress, groups=True, max_gen_toks=max_gen_toks)
            r = evaluator.evaluate()
            written = write_results(
                evaluator.last_output, evaluator.lm, suite, evaluator.leaf_stderrs(),
                {k: (r.scores[k], r.stderrs[k]) for k in r.scores}, folder, repo=spec.repo, revision=spec.revision,
                trust_remote_code=spec.trust_remote_code, dtype=str(torch_dtype).removeprefix("torch."),
                device=str(dev), batch_size=batch_size, samples_index=suite.samples("heldout"), tracker=tracker,
                log_samples=log_samples, env=env)
            scores = read_scores(written, wanted)  # the card's numbers: exactly what lm-eval's file says
            value, se = weighted_fitness(weights, {k: signs[k] * v["value"] for k, v in scores.items()},
                                         {k: v["stderr"] for k, v in scores.items()})
            entry.update({
                "scores": scores,
                "fitness": {"value": value, "stderr": se},
                "scorer": evaluator.scorer,
                "seconds": round(r.seconds, 3),
                "lm_eval_results": written.relative_to(out_path.parent).as_posix(),
                "lm_eval_samples": sorted(p.relative_to(out_path.parent).as_posix()
                                          for p in written.parent.glob("samples_*.jsonl")),
            })
            log.info("%s: fitness %.4f ± %s on %d held-out items", name, value,
                     f"{se:.4f}" if se is not None else "n/a", sum(r.n.values()))
        if calibration:
            text = calibration(tokenizer)
            held = text.score(model, "heldout")
            entry["calibration"] = held and {"value": held.value, "stderr": held.stderr, "tokens": held.tokens,
                                             "records": held.records}
            results.setdefault("calibration", text.describe())  # the first model's (the child's) tokenizer
            if held:
                log.info("%s: held-out calibration log-likelihood %.4f per token over %d tokens", name, held.value,
                         held.tokens)
        entry.setdefault("seconds", round(time.perf_counter() - t0, 3))
        # Free this model before loading the next: never hold two on the device (the evaluator's lm holds it too).
        model = evaluator = None
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    results["seconds"] = round(time.perf_counter() - start, 3)
    write_json(out_path, results)
    return results


def _task_record(t) -> dict:
    """What results.json (and the card) says about one benchmark."""
    b = t.bench
    record = {"weight": t.weight, "metric": b.metric, "n": t.n("heldout"), "dataset": b.dataset,
              "target": b.target, "filter": b.filter, "dataset_config": b.dataset_config, "split": b.split,
              "num_fewshot": b.num_fewshot, "higher_is_better": b.higher_is_better, "search_n": t.n("search"),
              "output_types": list(b.output_types)}
    return record


def copy_eval_results(results_json: Path | None, child_dir: Path) -> list[Path]:
    """Put the final evaluation's lm-eval files into the child folder (pushed with it) as eval_results/;
    `results_json` None (no evaluation): the folder holds none."""
    target = Path(child_dir) / EVAL_RESULTS
    if target.exists():
        shutil.rmtree(target)  # files of an earlier evaluation must not be pushed beside the new ones
    source = Path(results_json).parent / EVAL_RESULTS if results_json is not None else None
    if source is None or not source.is_dir():
        return []
    shutil.copytree(source, target)
    return sorted(p for p in target.rglob("*") if p.is_file())
