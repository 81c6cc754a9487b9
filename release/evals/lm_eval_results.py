"""The final evaluation's results in lm-eval's own format: what `lm_eval --output_path DIR` writes.

Per model, `DIR/<owner__name>/results_<date>.json` (`results` with "acc,none" / "acc_stderr,none",
`groups`, `configs`, `versions`, `n-shot`, `n-samples`, `higher_is_better`, `config.model_args`, `date`,
`lm_eval_version`, ...) and, with `fitness.log_samples`, `samples_<task>_<date>.jsonl`, written by lm-eval's
own `EvaluationTracker`. They are pushed with the child (`eval_results/`), and the card's numbers are read
back from them (`read_scores`), so the card and the files cannot disagree.

Two things differ from a plain `lm_eval` run, both on purpose:
- standard errors: the evaluation runs with bootstrap_iters=0 (lm-eval's bootstrap spawns a process pool
  per metric); a mean's closed-form stderr (lm-eval's own `mean_stderr`, what it reports for a mean) is
  filled in, and a group's is the stderr over all its items (weight_by_size groups) as the card states;
- local paths (records under the run folder, the user's YAMLs) are reduced to file names: these files are
  published.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from lm_eval.loggers import EvaluationTracker
from lm_eval.loggers.utils import add_env_info, add_tokenizer_info

from release.errors import ReleaseError

EVAL_RESULTS = "eval_results"  # the folder in the run's eval/ and in the child repo


def model_args(repo: str, revision: str | None, trust_remote_code: bool, dtype: str) -> str:
    """`--model_args` that evaluate the published model again with `lm_eval --model hf`."""
    args = [f"pretrained={repo}"] + ([f"revision={revision}"] if revision else [])
    return ",".join(args + (["trust_remote_code=True"] if trust_remote_code else []) + [f"dtype={dtype}"])


def _local_roots() -> list[str]:
    roots = {str(Path.home()), tempfile.gettempdir(), str(Path.cwd())}
    return sorted((r for r in roots if len(r) > 1), key=len, reverse=True)


def scrub_paths(value, roots: list[str]):
    """Absolute paths under a local root -> their file names (recursively through dicts and lists)."""
    if isinstance(value, str):
        local = any(value == r or value.startswith(r + "/") for r in roots)
        if value.startswith("/") and (local or ("\n" not in value and len(value) < 1024 and os.path.exists(value))):
            return Path(value).name
        return value
    if isinstance(value, dict):
        return {k: scrub_paths(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v, roots) for v in value]
    return value


def fill_stderrs(out: dict, suite, leaf_stderrs: dict, scores: dict) -> dict:
    """lm-eval's results with the closed-form stderrs, and one row per benchmark target it lacks."""
    results = dict(out["results"])
    for leaf, se in leaf_stderrs.items():
        for t in suite.tasks:
            if leaf in t.leaves:
                results[leaf] = {**results[leaf], f"{t.bench.metric}_stderr,{t.bench.filter}": se if se is not None else "N/A"}
    groups = dict(out.get("groups", {}))
    for t in suite.tasks:
        if t.bench.target in t.leaves:
            continue  # a single task: its own row is the benchmark's
        value, se = scores[t.name]
        row = {"alias": t.bench.target, t.bench.key: value,
               f"{t.bench.metric}_stderr,{t.bench.filter}": se if se is not None else "N/A"}
        for table in (results, groups):
            table[t.bench.target] = {**table.get(t.bench.target, {}), **row}
    return {**out, "results": results, **({"groups": groups} if groups else {})}


def write_results(out: dict, lm, suite, leaf_stderrs: dict, scores: dict, folder: Path, *, repo: str,
                  revision: str | None, trust_remote_code: bool, dtype: str, device: str, batch_size: int,
                  samples_index: dict, tracker, log_samples: bool, env: dict) -> Path:
    """Write one model's lm-eval results (and samples) into `folder` with lm-eval's EvaluationTracker;
    return the results file. `tracker` was made before the evaluation (it times it)."""
    results = fill_stderrs(out, suite, leaf_stderrs, scores)
    samples = results.pop("samples", None)
    args = model_args(repo, revision, trust_remote_code, dtype)
    model = lm.model
    results["config"] = {
        "model": "hf", "model_args": args,
        "model_num_parameters": sum(p.numel() for p in model.parameters()),
        "model_dtype": str(getattr(model, "dtype", "")), "model_revision": revision or "main",
        "model_sha": revision or "", "batch_size": batch_size, "batch_sizes": [], "device": device,
        "use_cache": None, "limit": None, "bootstrap_iters": 0, "gen_kwargs": None,
        "random_seed": None, "numpy_seed": None, "torch_seed": None, "fewshot_seed": suite.seed,
        # darwin-release: which items (per task, indices into lm-eval's eval docs) these numbers are on.
        "samples": samples_index,
    }
    results["git_hash"] = None  # lm-eval records the git commit of where it runs: nothing of the model's
    results["date"] = tracker.general_config_tracker.start_time_wall
    results.update(env)
    add_tokenizer_info(results, lm)
    results = scrub_paths(json.loads(json.dumps(results, default=str)), _local_roots())
    tracker.general_config_tracker.log_experiment_args(model_source="hf", model_args=args, system_instruction=None,
                                                       chat_template=None, fewshot_as_multiturn=False)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".lm-eval-") as tmp:
        tracker.output_path = tmp
        tracker.save_results_aggregated(results=results, samples=samples if log_samples else None)
        if log_samples:
            for task_name in results["configs"]:
                tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
        name = tracker.general_config_tracker.model_name_sanitized
        written = sorted((Path(tmp) / name).glob("results_*.json"))
        if not written:  # the tracker logs its errors instead of raising them
            raise ReleaseError(f"lm-eval's EvaluationTracker wrote no results for {repo}: see the log above")
        target = folder / name
        if target.exists():
            shutil.rmtree(target)  # an earlier evaluation of this model: replaced whole
        os.replace(Path(tmp) / name, target)
    return target / written[0].name


def start_tracker():
    """lm-eval's EvaluationTracker, started now (it times the evaluation), writing nowhere yet."""
    tracker = EvaluationTracker()
    tracker.general_config_tracker.start_time_wall = time.time()  # lm-eval's `date`: the start, in seconds
    return tracker


def env_info() -> dict:
    """lm-eval's environment fields (pretty_env_info, versions), computed once per final evaluation."""
    info: dict = {}
    add_env_info(info)
    return info


def read_scores(path: Path, tasks: dict) -> dict[str, dict]:
    """Benchmark -> {value, stderr} from an lm-eval results file; `tasks`: name -> {target, metric, filter}."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for name, t in tasks.items():
        row = data["results"].get(t["target"])
        key = f"{t['metric']},{t.get('filter', 'none')}"
        if row is None or key not in row:
            raise ReleaseError(f"{Path(path).name}: no {key} for {t['target']}: re-run the evaluate stage")
        se = row.get(f"{t['metric']}_stderr,{t.get('filter', 'none')}")
        out[name] = {"value": float(row[key]), "stderr": float(se) if isinstance(se, (int, float)) else None}
    return out
