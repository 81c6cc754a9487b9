"""Final evaluation: child, father and mother on the same held-out items, written for the model card.

Models are loaded one at a time with `AutoModelForCausalLM` (which maps the parents'
ConditionalGeneration checkpoints to a class that loads every text weight) and freed before the next.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from release.device import pick_device, pick_dtype, tune_cpu_threads
from release.evals.evaluator import Evaluator
from release.run.files import write_json
from release.evals.suite import TaskSuite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    path: Path  # local folder (a Hub snapshot or the emitted child)
    repo: str  # Hub id shown in the card
    revision: str | None = None  # resolved commit (40 hex) for the parents, None for the child
    trust_remote_code: bool = False  # True for the child (custom modeling files)


def load_model(spec: ModelSpec, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(spec.path, trust_remote_code=spec.trust_remote_code, dtype=dtype)
    model = model.to(device).eval()
    tune_cpu_threads(model)
    return model, tokenizer


def evaluate_models(models: dict[str, ModelSpec], suite: TaskSuite | None, out_path: str | Path, scorer: str = "fast",
                    batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                    progress: bool = True, calibration: Callable | None = None) -> dict:
    """Score every model on the held-out split and write results.json (atomically); return its content.

    `suite`: the benchmark tasks (None: none). `calibration(tokenizer)`: the calibration text's records for
    that tokenizer (`CalibrationSet`), whose held-out share is scored too (None: not scored)."""
    start = time.perf_counter()
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    tasks = suite.tasks if suite else []
    results = {
        "split": "heldout",
        "tasks": {t.name: {"weight": t.weight, "metric": t.bench.metric, "n": t.n("heldout"),
                           "dataset": t.bench.dataset} for t in tasks},
        "models": {},
        "scorer": scorer,
        "subsets_fingerprint": suite and suite.fingerprint,
    }
    for name, spec in tqdm(models.items(), desc="Final evaluation", unit="model", disable=not progress):
        model, tokenizer = load_model(spec, dev, torch_dtype)
        t0 = time.perf_counter()
        entry = results["models"][name] = {"repo": spec.repo, "revision": spec.revision, "scores": {}}
        if suite:
            evaluator = Evaluator(model, tokenizer, suite, split="heldout", scorer=scorer, batch_size=batch_size,
                                  progress=progress)
            r = evaluator.evaluate()
            entry.update(scores={k: {"value": r.scores[k], "stderr": r.stderrs[k]} for k in r.scores},
                         fitness={"value": r.fitness, "stderr": r.stderr}, scorer=evaluator.scorer)
            log.info("%s: fitness %.4f ± %s on %d held-out items", name, r.fitness,
                     f"{r.stderr:.4f}" if r.stderr is not None else "n/a", sum(r.n.values()))
            del evaluator, r
        if calibration:
            text = calibration(tokenizer)
            held = text.score(model, "heldout")
            entry["calibration"] = held and {"value": held.value, "stderr": held.stderr, "tokens": held.tokens,
                                             "records": held.records}
            results.setdefault("calibration", text.describe())  # the first model's (the child's) tokenizer
            if held:
                log.info("%s: held-out calibration log-likelihood %.4f per token over %d tokens", name, held.value,
                         held.tokens)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        # Free this model before loading the next: never hold two on the device.
        del model
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    results["seconds"] = round(time.perf_counter() - start, 3)
    write_json(Path(out_path), results)
    return results
