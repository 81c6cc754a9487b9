"""5. Emission memory: peak RSS of `emit_child` above its baseline, divided by the largest child shard.

`release.breeders.emit` streams tensors from the parents' shards into the child's, one child shard at a time, so its
memory should follow the largest shard, not the model. Measured on parents of the real checkpoint layouts
(Gemma 4 and Qwen3.5 ConditionalGeneration key names and shapes, bf16, sharded with an index) at hidden
2048, ~0.5 GB and ~0.3 GB, and a child of several ~200 MB shards holding every mother FFN (all ratios
nonzero), 3.8 times the largest shard, so that holding the whole child would show above the target.

Fair because: the emission runs alone in a fresh subprocess that has already imported and exercised
everything it uses (torch, transformers, the modeling files; the child config is built once) before its
baseline is read; the kernel's own peak counter (VmHWM, reset just before emitting via clear_refs) is read
after, and a sampler in this process records the subprocess's anonymous and file-backed (mmap) RSS
separately. Parent tensors are written directly from their shapes (constant per tensor, which also lets the
check confirm every child tensor came from the right parent tensor) rather than by building the models.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.common import proc_status, row

HIDDEN, FATHER_FFN, MOTHER_FFN = 2048, 6144, 5376
VOCAB = 1024
PARENT_SHARD, CHILD_SHARD = "200MB", "200MB"
DTYPE = torch.bfloat16
TARGET = 3.0


def _config(kind: str):
    """The tiny parents' configs (release.tiny) scaled up to HIDDEN and the FFN widths."""
    from release.tiny import father_config, mother_config

    if kind == "father":
        config = father_config(VOCAB)
        config.text_config.intermediate_size = FATHER_FFN
    else:
        config = mother_config(VOCAB)
        config.text_config.intermediate_size = MOTHER_FFN
        config.vision_config.out_hidden_size = HIDDEN
    config.text_config.hidden_size = HIDDEN
    config.dtype = config.text_config.dtype = DTYPE
    return config


def _fill(index: int) -> float:
    """A distinct constant per tensor (exact in bf16), so a child tensor names the parent tensor it came from."""
    return 1.0 + (index % 97) / 128


def write_parent(kind: str, out: Path) -> dict[str, float]:
    """A parent checkpoint folder at `out`, written shard by shard; returns tensor name -> its fill value."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers import Gemma4ForConditionalGeneration, Qwen3_5ForConditionalGeneration

    config = _config(kind)
    model_class = Gemma4ForConditionalGeneration if kind == "father" else Qwen3_5ForConditionalGeneration
    with torch.device("meta"):
        shapes = model_class(config).to(DTYPE).state_dict()
    shapes.pop("lm_head.weight", None)  # tied to the embeddings, not stored (as release.tiny and the real repos)
    fills = {name: _fill(i) for i, name in enumerate(shapes)}
    out.mkdir(parents=True)
    split = split_torch_state_dict_into_shards(shapes, max_shard_size=PARENT_SHARD)
    for filename, names in split.filename_to_tensors.items():
        shard = {n: torch.full(shapes[n].shape, fills[n], dtype=shapes[n].dtype) for n in names}
        save_file(shard, out / filename, metadata={"format": "pt"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.architectures = [model_class.__name__]
    config.save_pretrained(out)
    return fills


def emission_process(father: str, mother: str, out: str) -> None:
    """Runs in the subprocess: warm up, read the baseline, emit, print {baseline, peak} as JSON."""
    import gc

    from release.breeders.emit import emit_child, genome_record
    from release.breeders.hybrid import MIXING_FORMULA, MIXING_RULE, child_tensor_sources, make_child_config

    n_layers = _config("father").text_config.num_hidden_layers
    ratios = [0.3] * n_layers  # every mother FFN in the child: the largest child these parents give
    config = make_child_config(Path(father), Path(mother), ratios)
    child_tensor_sources(Path(father), Path(mother), config)  # imports and builds what emission uses, once
    genome = genome_record(ratios, [], config.layer_map, 0.5, MIXING_RULE, MIXING_FORMULA, search={},
                           father={"repo": "bench/father"}, mother={"repo": "bench/mother"})
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline = proc_status()
    print("ready", flush=True)
    emit_child(Path(father), Path(mother), genome, Path(out), max_shard_size=CHILD_SHARD, progress=False)
    print(json.dumps({"baseline": baseline["VmRSS"], "baseline_anon": baseline["RssAnon"],
                      "peak": proc_status()["VmHWM"]}), flush=True)


class _Sampler(threading.Thread):
    """Polls a process's anonymous and file-backed RSS (the kernel's peak counter only has their sum)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak = str(pid), threading.Event(), {"RssAnon": 0, "RssFile": 0}

    def run(self):
        while not self.stop.wait(0.005):
            try:
                status = proc_status(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            if not all(field in status for field in self.peak):  # exited (a zombie has no memory figures)
                return
            for field in self.peak:
                self.peak[field] = max(self.peak[field], status[field])


def _emit_in_subprocess(father: Path, mother: Path, out: Path) -> tuple[dict, dict]:
    code = "import sys; from bench.bench_emit_memory import emission_process; emission_process(*sys.argv[1:])"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", code, str(father), str(mother), str(out)], cwd=root,
                            stdout=subprocess.PIPE, text=True)
    sampler = _Sampler(proc.pid)
    if proc.stdout.readline().strip() == "ready":
        sampler.start()
        result = proc.stdout.readline()
        sampler.stop.set()
        sampler.join()
    if proc.wait() != 0:
        raise RuntimeError(f"emission subprocess failed with exit code {proc.returncode} (its error is above)")
    return json.loads(result), sampler.peak


def _check_child(child: Path, fills: dict[str, dict[str, float]]) -> tuple[int, int]:
    """The child holds exactly the tensors `child_tensor_sources` names, each equal to its parent tensor's fill
    value; returns (largest shard bytes, total bytes)."""
    from safetensors import safe_open

    from modeling.configuration_darwin import DarwinConfig
    from release.breeders.hybrid import child_tensor_sources

    from modeling.modeling_darwin import DarwinForCausalLM

    config = DarwinConfig.from_pretrained(child)
    sources = child_tensor_sources(child.parent / "father", child.parent / "mother", config)
    with torch.device("meta"):
        expected = DarwinForCausalLM(config).state_dict()
    assert len(config.stored_mother_layers) == len(set(config.layer_map))  # every mother FFN is in the child
    shards = sorted(child.glob("*.safetensors"))
    seen = set()
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():
                source = sources[key]
                tensor = f.get_tensor(key)
                assert tensor.shape == expected[key].shape, (key, tensor.shape, expected[key].shape)
                assert bool((tensor == fills[source.path.parent.name][source.key]).all()), key
                seen.add(key)
    assert seen == set(sources), set(sources) ^ seen
    sizes = [s.stat().st_size for s in shards]
    return max(sizes), sum(sizes)


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-emit-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        fills = {kind: write_parent(kind, root / kind) for kind in ("father", "mother")}
        written = time.perf_counter() - t0
        t0 = time.perf_counter()
        memory, sampled = _emit_in_subprocess(root / "father", root / "mother", root / "child")
        emitted = time.perf_counter() - t0
        largest, total = _check_child(root / "child", fills)
        n_shards = len(list((root / "child").glob("*.safetensors")))
        shutil.rmtree(root / "child")
    mb = 1e6
    ratio = (memory["peak"] - memory["baseline"]) / largest
    anon_ratio = (sampled["RssAnon"] - memory["baseline_anon"]) / largest  # heap only, mapped parent pages aside
    print(f"   child {total / mb:.0f} MB in {n_shards} shards (largest {largest / mb:.0f} MB); baseline "
          f"{memory['baseline'] / mb:.0f} MB, peak {memory['peak'] / mb:.0f} MB, of which sampled peaks: "
          f"anonymous {sampled['RssAnon'] / mb:.0f} MB, file-backed (mmap) {sampled['RssFile'] / mb:.0f} MB")
    print(f"   (peak - baseline) / largest shard = {ratio:.2f} (target <= {TARGET:g}); peak / largest shard = "
          f"{memory['peak'] / largest:.2f}; anonymous only: {anon_ratio:.2f}; "
          f"parents written in {written:.0f} s, emission {emitted:.0f} s")
    return {"emit_peak_memory_per_shard": row(
        ratio, "(peak RSS - baseline) / largest shard", f"<= {TARGET:g}",
        peak_over_shard=round(memory["peak"] / largest, 3), anon_over_shard=round(anon_ratio, 3),
        peak_mb=round(memory["peak"] / mb, 1), baseline_mb=round(memory["baseline"] / mb, 1),
        largest_shard_mb=round(largest / mb, 1), child_mb=round(total / mb, 1), child_shards=n_shards,
        sampled_anon_peak_mb=round(sampled["RssAnon"] / mb, 1), sampled_file_peak_mb=round(sampled["RssFile"] / mb, 1))}


if __name__ == "__main__":
    run()
