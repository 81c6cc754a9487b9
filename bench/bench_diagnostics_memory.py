"""18. Diagnostics memory: peak RSS of the health check, streaming (now) vs holding its models at once (before).

The health check of an ffn_blend child (`release.mri.health.health_check`) once held the child and a reference
hybrid (the father with every mapped mother FFN) together, then loaded the mother whole. It now holds one
model at a time: the child (its probe activations kept), then the father with one mother FFN at a time,
then the mother. Both versions run here on the same parents and child, each in a fresh subprocess, one after
the other: "before" is `release/mri/health.py` as of BEFORE (read with `git show`, loaded as its own module),
"after" is the checkout's. Each subprocess imports and exercises torch and transformers (a tiny health check)
before its baseline is read; the kernel's peak counter (VmHWM, reset by clear_refs) is read after.

Parents: release.tiny's architectures at the real FFN widths (hidden 2560, father FFN 10240, mother FFN
9216), FATHER_LAYERS father and MOTHER_LAYERS mother layers, the tiny tokenizers (vocab ~640, so the
embeddings stay small and the FFNs dominate, as at real size), random weights stored in bf16; the check runs
in fp32 on the CPU (the search's dtype there). The child is a blend on every layer (every mother FFN stored):
the largest child these parents give. The figure is (peak - baseline) / the largest single model's weights
in fp32 (the child's, here).
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
FATHER_LAYERS, MOTHER_LAYERS = 4, 4
BEFORE = "02aa03c"  # main before the streaming check
TARGET = 1.5
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


def check_process(version: str, root: str) -> None:
    """Runs in the subprocess: warm up on the tiny parents, read the baseline, run one health check of
    `version` (before | after) on the parents in `root`, print {baseline, peak, seconds} as JSON."""
    import gc
    import importlib.util

    torch.set_num_threads(1)
    from release.breeders.emit import emit_child
    from release.breeders.hybrid import default_layer_map
    from release.config import HealthSpec
    from release.tiny import write_tiny_parents

    if version == "before":
        source = subprocess.run(["git", "show", f"{BEFORE}:release/mri/health.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        spec = importlib.util.spec_from_loader("health_before", loader=None)
        health = importlib.util.module_from_spec(spec)
        exec(compile(source, "health_before.py", "exec"), health.__dict__)
    else:
        from release.mri import health
    root = Path(root)
    tiny = write_tiny_parents(root / "tiny", seed=0)
    tiny_child = emit_child(tiny.father, tiny.mother, {"ratios": [0.4] * 6, "layer_map": default_layer_map(6, 4),
                            "frozen": [], "r_max": 1.0}, root / "tiny-child", progress=False)
    health.health_check(tiny_child, tiny.father, tiny.mother, root / f"tiny-{version}", HealthSpec(),
                        default_layer_map(6, 4), [0.4] * 6, per_domain=1)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline, _ = _peak_rss()
    t0 = time.perf_counter()
    layer_map = default_layer_map(FATHER_LAYERS, MOTHER_LAYERS)
    result = health.health_check(root / "child", root / "father", root / "mother", root / f"health-{version}",
                                 HealthSpec(), layer_map, [0.4] * FATHER_LAYERS)
    seconds = time.perf_counter() - t0
    print(json.dumps({"baseline": baseline, "peak": _peak_rss()[1], "seconds": seconds,
                      "layers": result["layers"]}), flush=True)


def _run_check(version: str, root: Path) -> dict:
    code = "import sys; from bench.bench_diagnostics_memory import check_process; check_process(*sys.argv[1:])"
    out = subprocess.run([sys.executable, "-c", code, version, str(root)], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


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


def run() -> dict:
    from release.breeders.emit import emit_child
    from release.breeders.hybrid import default_layer_map

    with tempfile.TemporaryDirectory(prefix="bench-diag-") as tmp:
        root = Path(tmp)
        for kind in ("father", "mother"):
            _write_parent(kind, root / kind)
        genome = {"ratios": [0.4] * FATHER_LAYERS, "layer_map": default_layer_map(FATHER_LAYERS, MOTHER_LAYERS),
                  "frozen": [], "r_max": 1.0}
        emit_child(root / "father", root / "mother", genome, root / "child", max_shard_size="1GB", progress=False)
        weights = {name: _fp32_weight_bytes(root / name) for name in ("child", "father", "mother")}
        got = {version: _run_check(version, root) for version in ("before", "after")}
    largest = max(weights.values())
    ratio = {v: (r["peak"] - r["baseline"]) / largest for v, r in got.items()}
    same = all(abs(a["cos_mother"] - b["cos_mother"]) < 1e-4 and abs(a["hidden_cos_father"] - b["hidden_cos_father"])
               < 1e-4 for a, b in zip(got["before"]["layers"], got["after"]["layers"]))
    gb = 1e9
    print(f"   weights in fp32: child {weights['child'] / gb:.2f} GB, father {weights['father'] / gb:.2f} GB, "
          f"mother {weights['mother'] / gb:.2f} GB")
    for v, r in got.items():
        print(f"   {v}: peak {r['peak'] / gb:.2f} GB over a baseline of {r['baseline'] / gb:.2f} GB, "
              f"{r['seconds']:.0f} s: (peak - baseline) / largest model = {ratio[v]:.2f}")
    print(f"   after / before peak above baseline = {ratio['after'] / ratio['before']:.2f}; layer statistics "
          f"agree: {same} (target <= {TARGET:g}x the largest model)")
    return {"health_peak_memory_per_model": row(
        ratio["after"], "(peak RSS - baseline) / largest single model's fp32 weights", f"<= {TARGET:g}",
        before=round(ratio["before"], 3), seconds_after=round(got["after"]["seconds"], 1),
        seconds_before=round(got["before"]["seconds"], 1), largest_model_gb=round(largest / gb, 3),
        same_statistics=same, layers=FATHER_LAYERS, hidden=HIDDEN)}


if __name__ == "__main__":
    run()
