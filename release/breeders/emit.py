"""Write the child repo folder: config with auto_map, modeling files, shards, tokenizer, genome record.

Tensors are streamed from the parents' safetensors shards straight into the child's shards, one shard
at a time, so peak memory stays near one shard whatever the model's size. The folder is written under a
temporary name and renamed into place: a crash never leaves a half-written child behind.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import ExitStack
from pathlib import Path

from tqdm.auto import tqdm

import release
from release.config import parse_size as config_parse_size
from release.errors import ReleaseError
from release.breeders.hybrid import child_tensor_sources, make_child_config, modeling_files
from release.run.files import swap_folder

log = logging.getLogger(__name__)

GENOME_FILE = "darwin_genome.json"
# What the child takes from the father besides weights: tokenizer, chat template, generation defaults.
FATHER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                "chat_template.jinja", "chat_template.json", "generation_config.json")


def parse_size(size: str | int) -> int:
    """'5GB' -> bytes (the config checks sizes at load; this is for direct callers)."""
    try:
        return config_parse_size(size)
    except ValueError as e:
        raise ReleaseError(f"max_shard_size {e}") from None


def _plan_shards(sizes: dict[str, int], limit: int) -> list[list[str]]:
    shards, current, used = [], [], 0
    for name, size in sizes.items():
        if current and used + size > limit:
            shards.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    if current:
        shards.append(current)
    return shards


def _tensor_nbytes(handle, key: str) -> int:
    sl = handle.get_slice(key)
    n = 1
    for d in sl.get_shape():
        n *= d
    itemsize = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}[sl.get_dtype()]
    return n * itemsize


def write_shards(sources: dict, out: Path, max_shard_size: str | int, progress: bool = True,
                 transform=None) -> int:
    """Stream `{child_key: TensorSource(path, key)}` into safetensors shards + index; returns bytes written.

    `transform(child_key, tensor)`, when given, makes each written tensor from the one read (same shape
    and dtype), e.g. a weight merge with the other parent's tensor.

    Parent files are opened per child shard and closed after it: a safetensors handle maps its file, and
    every page read through it stays resident while it is open, so long-lived handles would grow RSS to
    the whole child instead of one shard.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    limit = parse_size(max_shard_size)
    by_file: dict[Path, list[str]] = {}
    for name, src in sources.items():
        by_file.setdefault(src.path, []).append(name)
    sizes: dict[str, int] = {}
    for path, names in by_file.items():
        with safe_open(str(path), framework="pt") as f:
            sizes.update({n: _tensor_nbytes(f, sources[n].key) for n in names})
    sizes = {name: sizes[name] for name in sources}  # keep the caller's order
    plan = _plan_shards(sizes, limit)
    names = (["model.safetensors"] if len(plan) == 1 else
             [f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))])
    weight_map = {}
    for name, keys in tqdm(list(zip(names, plan)), desc="write shards", unit="shard", disable=not progress):
        with ExitStack() as stack:
            handles = {}
            for path in dict.fromkeys(sources[k].path for k in keys):
                handles[path] = stack.enter_context(safe_open(str(path), framework="pt"))
            shard = {k: handles[sources[k].path].get_tensor(sources[k].key) for k in keys}
            if transform is not None:
                shard = {k: transform(k, v) for k, v in shard.items()}
            shard = {k: v.contiguous() for k, v in shard.items()}
            save_file(shard, str(out / name), metadata={"format": "pt"})
            del shard  # one shard in memory at a time
        weight_map.update({k: name for k in keys})
    total = sum(sizes.values())
    if len(plan) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return total


def emit_child(father_dir: Path, mother_dir: Path, genome: dict, out: Path, max_shard_size: str = "5GB",
               progress: bool = True) -> Path:
    """Write the child folder for `genome` (see `genome_record`) at `out`, atomically."""
    config = make_child_config(father_dir, mother_dir, genome["ratios"], layer_map=genome["layer_map"],
                               stored="active")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        config.save_pretrained(tmp)
        for f in modeling_files():
            shutil.copy2(f, tmp / f.name)
        for name in FATHER_FILES:
            if (father_dir / name).is_file():
                shutil.copy2(father_dir / name, tmp / name)
        size = write_shards(child_tensor_sources(father_dir, mother_dir, config), tmp, max_shard_size, progress)
        (tmp / GENOME_FILE).write_text(json.dumps(genome, indent=2) + "\n")
        swap_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("emitted child to %s (%.1f MB of weights)", out, size / 1e6)
    return out


def genome_record(ratios, frozen, layer_map, r_max, mixing_rule, mixing_formula, search: dict,
                  father: dict, mother: dict) -> dict:
    """The `darwin_genome.json` shipped with every child: enough to reproduce and to cite it."""
    from modeling.configuration_darwin import layer_kinds_for

    return {
        "ratios": [float(r) for r in ratios],
        "layer_kinds": layer_kinds_for([float(r) for r in ratios]),
        "frozen": list(frozen),
        "layer_map": list(layer_map),
        "r_max": r_max,
        "mixing_rule": mixing_rule,
        "mixing_formula": mixing_formula,
        "search": search,
        "father": father,
        "mother": mother,
        "tool": {"name": "darwin-release", "version": release.__version__},
    }
