"""18. Diagnostics memory and time: the health check and the MRI, streaming (now) vs holding models at once (before).

Both diagnostics now hold one model at a time (plus one mother FFN, read alone from her shards): the health
check of an ffn_blend child (`release.mri.health.health_check`) the child, then the father with one mother FFN
at a time, then the mother; the MRI (`release.mri.scan.run_mri`) the father with one mother FFN at a time
(before: the whole search hybrid, the father and every mapped mother FFN). Each run is a fresh subprocess, one
after the other; "before" is the module as of a commit read with `git show` and loaded as its own module.
Each subprocess imports and exercises torch and transformers (the same diagnostic on the tiny parents)
before its baseline is read; the kernel's peak counter (VmHWM, reset by clear_refs) is read after.

The time is compared with the search's: 10 candidate evaluations of the embedded default's fitness (the
search's own `make_fitness` on the live search hybrid of the same parents, genome 0.15 on every free layer),
extrapolated from the median of TIMED evaluations after a warm-up one (TIMED = 1 at 12 layers: one
candidate takes minutes there).

Parents: release.tiny's architectures at the real FFN widths (hidden 2560, father FFN 10240, mother FFN
9216), LAYERS father and LAYERS mother layers (environment BENCH_DIAG_LAYERS, default 12: the issue's
Genesis-shaped run), the tiny tokenizers (vocab ~640, so the embeddings stay small and the FFNs dominate, as
at real size), random weights stored in bf16; everything runs in fp32 on the CPU with one thread (the search's
dtype there). The child is a blend on every layer (every mother FFN stored): the largest child these parents
give. The figures are (peak - baseline) / the largest single model's weights in fp32: the child's for the
health check, the larger parent's for the MRI (no child exists yet when it runs). The health check's "before"
(child and reference hybrid held together, ~2.5x the child) runs only at 4 layers or fewer: at 12 it needs
~18 GB, more than the shared development machine can spare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import row

HIDDEN, FATHER_FFN, MOTHER_FFN = 2560, 10240, 9216
LAYERS = int(os.environ.get("BENCH_DIAG_LAYERS", "12"))
FATHER_LAYERS, MOTHER_LAYERS = LAYERS, LAYERS
BEFORE = {"health": "02aa03c", "mri": "4588b69"}  # main before each diagnostic streamed
TARGET = 1.5  # x the largest single model's fp32 weights
TIME_TARGET = 1.0  # x the time of CANDIDATES candidate evaluations
CANDIDATES, TIMED = 10, 1
GENOME = 0.15
ROOT = Path(__file__).resolve().parents[1]


def _write_parent(kind: str, out: Path) -> Path:
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    from release import tiny

    if kind == "father":
        from transformers import Gemma4ForConditionalGeneration as cls
        tokenizer = tiny.father_tokenizer()
        config = tiny.father_config(len(tokenizer))
        config.text_config.num_hidden_layers = FATHER_LAYERS
        config.text_config.layer_types = ["sliding_attention", "full_attention"] * (FATHER_LAYERS // 2)
    else:
        from transformers import Qwen3_5ForConditionalGeneration as cls
        tokenizer = tiny.mother_tokenizer()
        config = tiny.mother_config(len(tokenizer))
        config.text_config.num_hidden_layers = MOTHER_LAYERS
        config.text_config.layer_types = ["linear_attention"] * (MOTHER_LAYERS - 1) + ["full_attention"]
        config.vision_config.out_hidden_size = HIDDEN
    config.text_config.hidden_size = HIDDEN
    config.text_config.intermediate_size = FATHER_FFN if kind == "father" else MOTHER_FFN
    torch.manual_seed(0)
    model = cls(config).eval()
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
               if not (kind == "father" and k == "lm_head.weight")}  # tied to the embeddings, as in the real repo
    del model
    out.mkdir(parents=True)
    split = split_torch_state_dict_into_shards(tensors, max_shard_size="1GB")
    for filename, names in split.filename_to_tensors.items():
        save_file({n: tensors[n] for n in names}, out / filename, metadata={"format": "pt"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.architectures = [cls.__name__]
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _peak_rss() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return tuple(int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM"))


def _anon_rss() -> int:
    """Anonymous resident memory: RSS less the file pages (shards mapped while a model loads, which the
    kernel can drop at no cost)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class _AnonPeak:
    """The largest RssAnon seen, sampled every 20 ms by a thread (the kernel keeps no peak for it)."""

    def __init__(self):
        import threading

        self.peak, self._stop = _anon_rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _anon_rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _anon_rss())


def _module_before(path: str, commit: str, name: str, extra: dict | None = None):
    """`path` as of `commit`, loaded as its own module (names in `extra` given to it before it runs; an import
    of one of them is dropped from the source)."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    for key, value in (extra or {}).items():
        source = "\n".join(line for line in source.splitlines()
                           if not (line.startswith("from ") and line.endswith(f"import {key}")))
        module.__dict__[key] = value
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


def check_process(what: str, root: str) -> None:
    """Runs in the subprocess: warm up on the tiny parents, read the baseline, run one `what` (health-before,
    health-after, mri-before, mri-after, search) on the parents in `root`, print its figures as JSON."""
    import gc

    torch.set_num_threads(1)
    from release.breeders.emit import emit_child
    from release.breeders.hybrid import default_layer_map
    from release.config import HealthSpec
    from release.tiny import write_tiny_parents

    root = Path(root)
    kind, _, version = what.partition("-")
    tiny = write_tiny_parents(root / f"tiny-{what}", seed=0)
    layer_map = default_layer_map(FATHER_LAYERS, MOTHER_LAYERS)
    if kind == "health":
        if version == "before":
            health = _module_before("release/mri/health.py", BEFORE["health"], "health_before")
        else:
            from release.mri import health
        tiny_child = emit_child(tiny.father, tiny.mother, {"ratios": [0.4] * 6, "layer_map": default_layer_map(6, 4),
                                "frozen": [], "r_max": 1.0}, root / f"tiny-child-{what}", progress=False)
        warm = lambda: health.health_check(tiny_child, tiny.father, tiny.mother, root / f"tiny-{what}-out",  # noqa: E731
                                           HealthSpec(), default_layer_map(6, 4), [0.4] * 6, per_domain=1)
        job = lambda: health.health_check(root / "child", root / "father", root / "mother", root / what,  # noqa: E731
                                          HealthSpec(), layer_map, [0.4] * FATHER_LAYERS)
    elif kind == "mri":
        if version == "before":
            probe = _module_before("release/mri/probe.py", BEFORE["mri"], "probe_before")
            scan = _module_before("release/mri/scan.py", BEFORE["mri"], "scan_before", {"probe_run": probe.probe_run})
        else:
            from release.mri import scan
        warm = lambda: scan.run_mri(tiny.father, tiny.mother, root / f"tiny-{what}-out", per_domain=1)  # noqa: E731
        job = lambda: scan.run_mri(root / "father", root / "mother", root / what)  # noqa: E731
    else:
        warm, job = lambda: None, lambda: _candidates(root)
    warm()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline, _ = _peak_rss()
    anon_baseline, anon = _anon_rss(), _AnonPeak()
    t0 = time.perf_counter()
    result = job()
    seconds = time.perf_counter() - t0
    anon_peak = anon.stop()
    print(json.dumps({"baseline": baseline, "peak": _peak_rss()[1], "seconds": seconds,
                      "anon_baseline": anon_baseline, "anon_peak": anon_peak,
                      "layers": result.get("layers"), "probe": (result.get("probe") or {}).get("layers"),
                      "candidate_seconds": result.get("candidate_seconds")}), flush=True)


def _candidates(root: Path) -> dict:
    """The search's side: the live search hybrid and the default fitness; one warm-up evaluation (tasks and
    tokenisation built once, as in the search), then TIMED evaluations."""
    import logging
    import statistics

    from transformers import AutoTokenizer

    from release.breeders.hybrid import build_search_hybrid
    from release.config import load_config
    from release.search.fitness import make_fitness

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    config = load_config(ROOT / "configs" / "default.yaml").model_copy(update={"runs_dir": root / "runs"})
    model = build_search_hybrid(root / "father", root / "mother")
    fitness = make_fitness(config, model, AutoTokenizer.from_pretrained(root / "father"), root / "fitness")
    genome = [0.0 if i in config.genome.frozen else GENOME for i in range(FATHER_LAYERS)]
    fitness(genome)
    times = []
    for _ in range(TIMED):
        t0 = time.perf_counter()
        fitness(genome)
        times.append(time.perf_counter() - t0)
    return {"candidate_seconds": statistics.median(times)}


def _run_check(what: str, root: Path) -> dict:
    code = "import sys; from bench.bench_diagnostics_memory import check_process; check_process(*sys.argv[1:])"
    print(f"   running {what} ...", flush=True)
    out = subprocess.run([sys.executable, "-c", code, what, str(root)], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"   {what}: " + json.dumps({k: v for k, v in result.items() if k not in ("layers", "probe")}), flush=True)
    return result


def _fp32_weight_bytes(folder: Path) -> int:
    """A model's weights in fp32, the dtype the check runs in: the whole child, a parent's text model only
    (what the check loads of it; the vision tower and mtp head stay on disk)."""
    import math

    from safetensors import safe_open

    total = 0
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():
                if folder.name == "child" or key.startswith(("model.language_model.", "lm_head.")):
                    total += 4 * math.prod(f.get_slice(key).get_shape())
    return total


def _predicted(root: Path):
    """The plan's prediction (release.plan.costs.diagnostics_peak) for these parents, in fp32, every layer blending."""
    from transformers import AutoTokenizer

    from release.config import load_config
    from release.parents.metadata import read_folder
    from release.plan.checks import parent_checks
    from release.plan.costs import diagnostics_peak, probe_positions

    config = load_config(ROOT / "configs" / "default.yaml")
    config = config.model_copy(update={"genome": config.genome.model_copy(update={"frozen": []})})
    plan = parent_checks(config, read_folder("father", root / "father"), read_folder("mother", root / "mother"))
    return diagnostics_peak(plan, "float32", probe_positions(AutoTokenizer.from_pretrained(root / "father"), None, 0))


def _agree(a: list[dict], b: list[dict], keys: tuple[str, ...]) -> bool:
    return all(abs(x[k] - y[k]) < 1e-4 for x, y in zip(a, b, strict=True) for k in keys)


def run() -> dict:
    from release.breeders.emit import emit_child
    from release.breeders.hybrid import default_layer_map

    whats = ["mri-after", "mri-before", "health-after", "search"]
    if LAYERS <= 4:
        whats.insert(2, "health-before")
    if os.environ.get("BENCH_DIAG_ONLY"):  # a partial rerun: its per-run lines only, no rows
        whats = os.environ["BENCH_DIAG_ONLY"].split(",")
    with tempfile.TemporaryDirectory(prefix="bench-diag-") as tmp:
        root = Path(tmp)
        for kind in ("father", "mother"):
            _write_parent(kind, root / kind)
        genome = {"ratios": [0.4] * FATHER_LAYERS, "layer_map": default_layer_map(FATHER_LAYERS, MOTHER_LAYERS),
                  "frozen": [], "r_max": 1.0}
        emit_child(root / "father", root / "mother", genome, root / "child", max_shard_size="1GB", progress=False)
        weights = {name: _fp32_weight_bytes(root / name) for name in ("child", "father", "mother")}
        predicted = _predicted(root)
        got = {what: _run_check(what, root) for what in whats}
    gb = 1e9
    largest = {"health": max(weights.values()), "mri": max(weights["father"], weights["mother"])}
    print(f"   weights in fp32: child {weights['child'] / gb:.3f} GB, father {weights['father'] / gb:.3f} GB, "
          f"mother {weights['mother'] / gb:.3f} GB")
    if os.environ.get("BENCH_DIAG_ONLY"):
        return {}
    ten = CANDIDATES * got["search"]["candidate_seconds"]
    print(f"   {LAYERS} father + {LAYERS} mother layers at hidden {HIDDEN}; weights in fp32: child "
          f"{weights['child'] / gb:.2f} GB, father {weights['father'] / gb:.2f} GB, mother {weights['mother'] / gb:.2f} GB")
    print(f"   search: one candidate {got['search']['candidate_seconds']:.1f} s (median of {TIMED}), {CANDIDATES} "
          f"candidates {ten:.0f} s; its process peaked {(got['search']['peak'] - got['search']['baseline']) / gb:.2f} GB "
          "above baseline (the search hybrid)")
    ratio, rows = {}, {}
    for what, r in got.items():
        if what == "search":
            continue
        kind = what.partition("-")[0]
        ratio[what] = (r["peak"] - r["baseline"]) / largest[kind]
        print(f"   {what}: peak {r['peak'] / gb:.2f} GB over a baseline of {r['baseline'] / gb:.2f} GB, {r['seconds']:.0f} s: "
              f"(peak - baseline) / largest model = {ratio[what]:.2f} (target <= {TARGET:g}); time / {CANDIDATES} "
              f"candidates = {r['seconds'] / ten:.2f} (target <= {TIME_TARGET:g})")
        if "anon_peak" in r:
            print(f"      anonymous memory (RSS less mapped file pages): {(r['anon_peak'] - r['anon_baseline']) / gb:.2f} GB "
                  f"above baseline = {(r['anon_peak'] - r['anon_baseline']) / largest[kind]:.2f}x the largest model")
    plan = {"mri": predicted.mri, "health": predicted.health}
    for kind in plan:
        r = got[f"{kind}-after"]
        print(f"   plan's prediction for {kind}: {plan[kind] / gb:.2f} GB; measured RSS / predicted = "
              f"{(r['peak'] - r['baseline']) / plan[kind]:.2f}, anonymous / predicted = "
              f"{(r['anon_peak'] - r['anon_baseline']) / plan[kind]:.2f}" + (
                  f" (the plan adds up to {predicted.child_stored / gb:.2f} GB of mapped shards on CPU while the "
                  "child loads)" if kind == "health" else ""))
        rows[f"{kind}_peak_vs_plan"] = row((r["anon_peak"] - r["anon_baseline"]) / plan[kind],
                                           "measured anonymous peak / the plan's prediction", "0.85-1.15",
                                           rss_vs_plan=round((r["peak"] - r["baseline"]) / plan[kind], 3),
                                           predicted_gb=round(plan[kind] / gb, 3), layers=LAYERS)
    same_mri = _agree(got["mri-before"]["probe"], got["mri-after"]["probe"], ("cos_distance", "rel_norm", "mother_share"))
    print(f"   MRI probe statistics before and after agree: {same_mri}")
    for kind in ("mri", "health"):
        after = got[f"{kind}-after"]
        extra = {}
        if f"{kind}-before" in got:
            before = got[f"{kind}-before"]
            extra = {"before": round(ratio[f"{kind}-before"], 3), "seconds_before": round(before["seconds"], 1)}
            if kind == "health":
                extra["same_statistics"] = _agree(before["layers"], after["layers"], ("cos_mother", "hidden_cos_father"))
            else:
                extra["same_statistics"] = same_mri
        rows[f"{kind}_peak_memory_per_model"] = row(
            ratio[f"{kind}-after"], "(peak RSS - baseline) / largest single model's fp32 weights", f"<= {TARGET:g}",
            seconds_after=round(after["seconds"], 1), largest_model_gb=round(largest[kind] / gb, 3),
            anonymous=round((after["anon_peak"] - after["anon_baseline"]) / largest[kind], 3) if "anon_peak" in after else None,
            layers=LAYERS, hidden=HIDDEN, **extra)
        rows[f"{kind}_time_per_10_candidates"] = row(
            after["seconds"] / ten, f"{kind} time / {CANDIDATES} candidate evaluations", f"<= {TIME_TARGET:g}",
            seconds=round(after["seconds"], 1), candidate_seconds=round(got["search"]["candidate_seconds"], 2),
            layers=LAYERS)
    return rows


if __name__ == "__main__":
    run()
