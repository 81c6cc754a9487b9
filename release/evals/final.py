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

import torch

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


def evaluate_models(models: dict[str, ModelSpec], suite: TaskSuite, out_path: str | Path, scorer: str = "fast",
                    batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                    progress: bool = True) -> dict:
    """Score every model on the held-out split and write results.json (atomically); return its content."""
    start = time.perf_counter()
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    results = {
        "split": "heldout",
        "tasks": {t.name: {"weight": t.weight, "metric": t.bench.metric, "n": t.n("heldout"),
                           "dataset": t.bench.dataset} for t in suite.tasks},
        "models": {},
        "scorer": scorer,
        "subsets_fingerprint": suite.fingerprint,
    }
    for name, spec in models.items():  # no bar of its own: it would overprint the loading and scoring bars
        model, tokenizer = load_model(spec, dev, torch_dtype)
        evaluator = Evaluator(model, tokenizer, suite, split="heldout", scorer=scorer, batch_size=batch_size,
                              progress=progress)
        r = evaluator.evaluate()
        results["models"][name] = {
            "repo": spec.repo, "revision": spec.revision,
            "scores": {k: {"value": r.scores[k], "stderr": r.stderrs[k]} for k in r.scores},
            "fitness": {"value": r.fitness, "stderr": r.stderr},
            "scorer": evaluator.scorer,
            "seconds": round(r.seconds, 3),
        }
        log.info("%s: fitness %.4f ± %s on %d held-out items", name, r.fitness,
                 f"{r.stderr:.4f}" if r.stderr is not None else "n/a", sum(r.n.values()))
        # Free this model before loading the next: never hold two on the device.
        del model, evaluator, r
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    results["seconds"] = round(time.perf_counter() - start, 3)
    write_json(Path(out_path), results)
    return results
