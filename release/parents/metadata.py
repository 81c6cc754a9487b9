"""A parent's config and tensor table (name -> shard file, shape, dtype), read without its weights.

From the Hub: config.json, the safetensors index and each shard's header (huggingface_hub's
`get_safetensors_metadata`, which reads headers with HTTP range requests). From a local folder: the same
files, each header read from the first bytes of its shard. Shards an index names but the folder lacks (a
pull that skipped them) are listed with unknown shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from release.errors import ReleaseError
from release.parents.headers import PREFIX, header_length, parse_header
from release.parents import headers

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
REDOWNLOAD = "re-download it (--force pull) or choose a revision whose checkpoint is complete"
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class TensorInfo:
    file: str  # shard file name inside the repo / folder
    shape: tuple[int, ...] | None  # None: the shard is not here (not pulled)
    dtype: str | None  # safetensors dtype name, e.g. "BF16"

    @property
    def nbytes(self) -> int | None:
        if self.shape is None or self.dtype is None:
            return None
        n = DTYPE_BYTES.get(self.dtype, 2)
        for d in self.shape:
            n *= d
        return n


@dataclass
class ParentMeta:
    role: str  # "father" or "mother"
    where: str  # repo id (with revision) or folder path, for messages
    config: dict
    tensors: dict[str, TensorInfo]
    files: dict[str, int] = field(default_factory=dict)  # every file of the repo -> size in bytes
    revision: str | None = None  # the commit the metadata was read at (Hub only)

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")


def _json_mapping(data: bytes | str, where: str, name: str) -> dict:
    try:
        value = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except ValueError:  # not JSON, or not UTF-8
        value = None
    if not isinstance(value, dict):
        raise ReleaseError(f"{where}: {name} is not valid JSON holding a mapping: {REDOWNLOAD}")
    return value


def _config_json(data: bytes | str, where: str) -> dict:
    config = _json_mapping(data, where, "config.json")
    if not isinstance(config.get("model_type"), str):
        raise ReleaseError(f"{where}: config.json has no model_type: {REDOWNLOAD}")
    return config


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor name -> info from a safetensors file's header, every entry checked (release.parents.headers)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        length = header_length(f.read(PREFIX), str(path), size, REDOWNLOAD)
        raw = f.read(length)
    return {name: TensorInfo(path.name, shape, dtype)
            for name, (dtype, shape) in parse_header(raw, str(path), size - PREFIX - length, REDOWNLOAD).items()}


def read_config(role: str, folder: str | Path) -> dict:
    """A checkpoint folder's config.json, checked: a mapping with a model_type."""
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise ReleaseError(f"{role} config: {config_path} not found: point it at a complete checkpoint folder")
    return _config_json(config_path.read_bytes(), f"{role} {folder}")


def read_folder(role: str, folder: str | Path) -> ParentMeta:
    """A parent checkpoint folder's metadata (only headers are read)."""
    folder = Path(folder)
    where = f"{role} {folder}"
    config = read_config(role, folder)
    tensors: dict[str, TensorInfo] = {}
    if (folder / INDEX).is_file():
        weight_map = headers.weight_map((folder / INDEX).read_bytes(), f"{where}: {INDEX}", REDOWNLOAD)
        shard_headers = {name: read_header(folder / name) for name in sorted(set(weight_map.values()))
                         if (folder / name).is_file()}
        for key, name in weight_map.items():
            tensors[key] = shard_headers.get(name, {}).get(key, TensorInfo(name, None, None))
    elif (folder / SINGLE).is_file():
        tensors = read_header(folder / SINGLE)
    # else: no weights; the config checks still run, and childmap names the missing weights
    files = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    return ParentMeta(role, where, config, tensors, files)


def read_hub(role: str, hub, repo: str, revision: str = "main") -> ParentMeta:
    """A parent repo's metadata from the Hub: small files and range requests only, never weights. Every file
    read is checked for shape, every header entry against the file's size the Hub reports."""
    where = f"{role} {repo}@{revision}"
    sha, config_text, files = hub.weights_metadata(repo, revision)
    if config_text is None:
        raise ReleaseError(f"pull: the {role} {repo}@{sha[:12]} holds no config.json, so no checkpoint: publish "
                           "it completely (or name another revision), then run again")
    config = _config_json(config_text, where)
    fix = "the parent repo is not a usable checkpoint: choose another revision or repair the repo"
    if INDEX in files:
        index = headers.weight_map(hub.small_file(repo, INDEX, sha), f"{where}: {INDEX}", fix)
        shards = sorted(set(index.values()))
    elif SINGLE in files:
        index, shards = None, [SINGLE]
    else:
        raise ReleaseError(f"{repo}@{revision} holds no safetensors weights: choose a repo with "
                           "model.safetensors or a safetensors index")
    missing = [name for name in shards if name not in files]
    if missing:
        raise ReleaseError(f"{where}: the index names {', '.join(missing)} but the repo lacks it; "
                           "the parent repo is incomplete")
    tensors = {}
    for name in shards:
        size = files[name] or None  # a Hub that reports no size: the offsets are still checked among themselves
        length, raw = hub.safetensors_header(repo, name, sha, size)
        data_size = None if size is None else size - PREFIX - length
        for key, (dtype, shape) in parse_header(raw, f"{where}: {name}", data_size, fix).items():
            tensors[key] = TensorInfo(name, shape, dtype)
    lost = sorted(k for k, name in (index or {}).items() if k not in tensors or tensors[k].file != name)
    if lost:
        raise ReleaseError(f"{where}: {INDEX} names {lost[0]} in {index[lost[0]]}, whose header lacks it; "
                           "the parent repo is incomplete")
    return ParentMeta(role, f"{role} {repo}", config, tensors, files, revision=sha)
