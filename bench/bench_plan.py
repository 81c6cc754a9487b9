"""The plan's predictions against measured runs, at a mid-size width (real key names, reduced widths).

1. Tokens per candidate: `release.plan` counts them from the search subset without a model; the scorer
   counts what it actually runs through the model. Target: equal.
2. Peak memory of one evaluation: predicted activation bytes (release/plan/costs.py: the most demanding
   forward pass's kept logits and activations) vs measured: the process's peak RSS during one evaluation
   (the kernel's VmHWM, reset to the current RSS right before it) minus its RSS after building the hybrid
   and a warm-up evaluation. Measured in a subprocess with glibc's mmap threshold fixed at 64 KiB
   (MALLOC_MMAP_THRESHOLD_): large tensors are then mapped and unmapped, so RSS follows live tensors
   instead of heap pages kept from the warm-up. Target: within 15%.
3. Pull: bytes of whole needed shards vs only the needed tensors' bytes (byte ranges) vs the repo.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.common import proc_status, row

HIDDEN, FATHER_FFN, MOTHER_FFN, VOCAB = 512, 2048, 1792, 32768
BATCHES = (4, 16)


def _write_parent(kind: str, out: Path) -> Path:
    """A mid-size parent: release.tiny's architecture at wider widths, random weights, tiny tokenizer."""
    from release import tiny

    config = (tiny.father_config if kind == "father" else tiny.mother_config)(VOCAB)
    config.text_config.hidden_size = HIDDEN
    config.text_config.intermediate_size = FATHER_FFN if kind == "father" else MOTHER_FFN
    if kind == "father":
        config.text_config.vocab_size_per_layer_input = VOCAB
        from transformers import Gemma4ForConditionalGeneration as cls
        tokenizer = tiny.father_tokenizer()
    else:
        config.vision_config.out_hidden_size = HIDDEN
        from transformers import Qwen3_5ForConditionalGeneration as cls
        tokenizer = tiny.mother_tokenizer()
    out.mkdir(parents=True)
    torch.manual_seed(0)
    model = cls(config).eval()
    tensors = {k: v for k, v in model.state_dict().items() if not (kind == "father" and k == "lm_head.weight")}
    if kind == "mother":
        tensors["mtp.fc.weight"] = torch.zeros(HIDDEN, 2 * HIDDEN)
    tiny.write_checkpoint(model, tensors, out)
    tokenizer.save_pretrained(out)
    return out


def _measure(father: Path, mother: Path, batch_size: int) -> dict:
    from transformers import AutoTokenizer

    from release.config import load_config
    from release.evals import Evaluator, TaskSuite
    from release.breeders.hybrid import build_search_hybrid
    from release.parents.metadata import read_folder
    from release.plan.checks import parent_checks
    from release.plan.costs import count_tokens, peak_batch_bytes
    from release.plan.requests import search_requests

    config = load_config(Path(__file__).resolve().parents[1] / "configs/default.yaml")
    plan = parent_checks(config, read_folder("father", father), read_folder("mother", mother))
    tokenizer = AutoTokenizer.from_pretrained(father)
    count = count_tokens(search_requests(config, tokenizer), batch_size, 8192, "fast")
    predicted = peak_batch_bytes(plan, count, "float32")
    model = build_search_hybrid(father, mother)
    model.set_ratios([0.2] * model.config.num_hidden_layers)
    with tempfile.TemporaryDirectory() as tmp:
        suite = TaskSuite.from_spec(config.fitness, Path(tmp), config.search.seed)
        evaluator = Evaluator(model, tokenizer, suite, batch_size=batch_size, verify=0)
        evaluator.evaluate()  # warm: lazy imports, tokenisation caches
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        baseline = proc_status()["VmRSS"]
        result = evaluator.evaluate()
        measured = proc_status()["VmHWM"] - baseline
    return {"tokens_measured": result.tokens, "tokens_predicted": count.tokens,
            "act_measured": measured, "act_predicted": predicted, "batch": max(count.forwards)}


def _measure_in_subprocess(father: Path, mother: Path, batch_size: int) -> dict:
    code = (f"import json, torch; torch.set_num_threads(2); from bench.bench_plan import _measure; from pathlib import Path; "
            f"print('RESULT', json.dumps(_measure(Path({str(father)!r}), Path({str(mother)!r}), {batch_size})))")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800,
                         cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"measurement failed: {out.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _pull_bytes(father: Path, mother: Path) -> dict:
    from release.config import load_config
    from release.parents.metadata import read_folder
    from release.parents.selection import select_files
    from release.plan.checks import parent_checks

    config = load_config(Path(__file__).resolve().parents[1] / "configs/default.yaml")
    metas = [read_folder("father", father), read_folder("mother", mother)]
    plan = parent_checks(config, *metas)
    out = {"repo": 0, "whole_shards": 0, "tensors_only": 0}
    for meta in metas:
        sel = select_files(meta, plan.tensors)
        out["repo"] += sel.repo_bytes
        out["whole_shards"] += sel.fetch_bytes
        needed = {k for k in meta.tensors if k.startswith(("model.language_model.", "lm_head."))}
        small = sum(meta.files[f] for f in sel.files if not f.endswith(".safetensors"))
        out["tensors_only"] += small + sum(meta.tensors[k].nbytes for k in needed)
    return out


def run() -> dict:
    torch.set_num_threads(2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        father, mother = _write_parent("father", Path(tmp) / "f"), _write_parent("mother", Path(tmp) / "m")
        for bs in BATCHES:
            m = _measure_in_subprocess(father, mother, bs)
            ratio = m["act_predicted"] / m["act_measured"]
            print(f"   batch {bs}: tokens predicted {m['tokens_predicted']:,} measured {m['tokens_measured']:,}; "
                  f"activation peak predicted {m['act_predicted'] / 1e6:.0f} MB measured "
                  f"{m['act_measured'] / 1e6:.0f} MB (ratio {ratio:.3f}), largest batch {m['batch']}")
            results[f"plan_tokens_batch{bs}"] = row(m["tokens_predicted"] / m["tokens_measured"], "predicted/measured",
                                                    "1.0 exactly")
            results[f"plan_peak_memory_batch{bs}"] = row(ratio, "predicted/measured", "0.85-1.15",
                                                         predicted_mb=round(m["act_predicted"] / 1e6),
                                                         measured_mb=round(m["act_measured"] / 1e6))
        p = _pull_bytes(father, mother)
        print(f"   pull: repo {p['repo'] / 1e6:.1f} MB, whole needed shards {p['whole_shards'] / 1e6:.1f} MB, "
              f"needed tensors only {p['tensors_only'] / 1e6:.1f} MB")
        results["pull_whole_shards_vs_repo"] = row(p["whole_shards"] / p["repo"], "fraction of repo bytes", "< 1")
        results["pull_ranges_vs_whole_shards"] = row(p["tensors_only"] / p["whole_shards"],
                                                     "byte-range bytes / whole-shard bytes", "informational")
    print(json.dumps(results, indent=1))
    return results
