"""`darwin-release reproduce REPO[@REV]`: rebuild a published child from its own record, compare every tensor.

The child's `darwin_genome.json` names the breeder (`method`), the genome as applied (`ratios`, the
density and the seed of a weight merge, ffn_blend's layer map) and the parents' commits; its card names
the same parents. The parents are pulled at those commits, the recorded breeder emits the child again into
a temporary folder, and every tensor of the published child is compared byte for byte with the rebuild.
Emitting is deterministic for a given genome record (ffn_blend copies tensors; the weight merges are seeded
float32 arithmetic rounded once), so a child that is what its card says is reproduced bit for bit.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from release.errors import ReleaseError

log = logging.getLogger(__name__)

GENOME_FILE = "darwin_genome.json"
# The child's weights, configs and card: what the comparison and the record need, nothing else.
CHILD_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "README.md")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def library_versions() -> dict:
    """The versions a child is written with (recorded in darwin_genome.json's `tool`), read without importing."""
    out = {}
    for name in ("transformers", "torch", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def parse_spec(spec: str) -> tuple[str, str]:
    """'owner/name[@rev]' -> (repo, revision); revision 'main' when none is given."""
    repo, at, revision = spec.partition("@")
    if not _REPO_ID.match(repo) or (at and not revision):
        raise ReleaseError(f"reproduce: {spec!r} is not a repo: give owner/name, optionally @revision "
                           "(a branch or a commit), e.g. darwin-local/tiny-darwin-child@main")
    return repo, revision or "main"


@dataclass(frozen=True)
class Reproduction:
    repo: str
    revision: str  # the commit compared
    method: str
    tensors: int  # tensors compared
    difference: str | None = None  # the first differing tensor and by how much; None: bit for bit
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.difference is None

    def summary(self) -> str:
        where = f"{self.repo}@{self.revision[:12]}"
        if self.identical:
            return f"reproduced bit for bit: {where} ({self.method}), all {self.tensors} tensors identical"
        return f"NOT reproduced: {where} ({self.method}): {self.difference}"


def reproduce(hub, spec: str, progress: bool = False) -> Reproduction:
    """Rebuild `spec`'s child from its record on `hub` (a release.hub.client.Hub) and compare every tensor."""
    from release.breeders import get_breeder  # imports torch

    repo, revision = parse_spec(spec)
    child = hub.pull(repo, revision, allow_patterns=CHILD_PATTERNS, action="reproduce")
    genome = _genome(child.path, f"{repo}@{child.revision[:12]}")
    method = genome.get("method") or ("ffn_blend" if "layer_map" in genome else None)
    if method is None:
        raise ReleaseError(f"reproduce: {GENOME_FILE} of {repo}@{child.revision[:12]} names no method: it was "
                           "written by another tool; reproduce reads darwin-release's records")
    notes = _card_notes(child.path, genome) + _version_notes(genome) + _search_notes(genome, method)
    parents = {}
    for role in ("father", "mother", "base"):
        if role not in genome:
            continue
        ref = genome[role]
        parents[role] = hub.pull(ref["repo"], ref["revision"], action="reproduce").path
        log.info("reproduce: pulled the %s %s@%s", role, ref["repo"], ref["revision"][:12])
    breeder = get_breeder(method)
    with tempfile.TemporaryDirectory(prefix="darwin-reproduce-") as tmp:
        rebuilt = Path(tmp) / "child"
        extra = {"base_dir": parents["base"]} if "base" in parents else {}  # only the weight merges take one
        breeder.emit(parents["father"], parents["mother"], genome, rebuilt, max_shard_size="5GB",
                     progress=progress, **extra)
        count, difference = compare_tensors(child.path, rebuilt)
    for note in notes:
        log.info("reproduce: %s", note)
    return Reproduction(repo, child.revision, method, count, difference, notes)


def _genome(folder: Path, where: str) -> dict:
    path = folder / GENOME_FILE
    if not path.is_file():
        raise ReleaseError(f"reproduce: {where} has no {GENOME_FILE}, so no recipe to rebuild it from: only "
                           "children released by darwin-release can be reproduced")
    try:
        genome = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ReleaseError(f"reproduce: {GENOME_FILE} of {where} is not JSON ({e}): the record is damaged") from None
    missing = [k for k in ("ratios", "father", "mother") if k not in genome]
    if missing:
        raise ReleaseError(f"reproduce: {GENOME_FILE} of {where} lacks {', '.join(missing)}: it is not a "
                           "darwin-release genome record")
    return genome


def _card_notes(folder: Path, genome: dict) -> list[str]:
    """Where the card disagrees with the record about the parents (the record is what is rebuilt)."""
    from huggingface_hub.repocard import metadata_load

    card = folder / "README.md"
    if not card.is_file():
        return ["the child has no card (README.md): the parents come from its darwin_genome.json alone"]
    base_model = (metadata_load(card) or {}).get("base_model") or []
    base_model = [base_model] if isinstance(base_model, str) else list(base_model)
    named = [genome[role]["repo"] for role in ("father", "mother") if role in genome]
    absent = [repo for repo in named if repo not in base_model]
    return [f"the card's base_model ({', '.join(base_model) or 'none'}) does not name {', '.join(absent)}, "
            "which darwin_genome.json names"] if absent else []


def _version_notes(genome: dict) -> list[str]:
    recorded, here = genome.get("tool", {}), library_versions()
    return [f"the child was written with {name} {recorded[name]}, this is {here.get(name, 'absent')}: a difference "
            "may come from that" for name in ("transformers", "torch") if name in recorded and recorded[name] != here.get(name)]


def _search_notes(genome: dict, method: str) -> list[str]:
    """ffn_blend: whether the searched ratios follow from CMA-ES's recorded point `search.x` (through the frozen
    layers, r_max and, with the MRI trust, tau and r_MRI), before any transplant snapped them."""
    from release.breeders.ffn_genome import GenomeSpace
    from release.config import GenomeSpec

    x = (genome.get("search") or {}).get("x")
    if method != "ffn_blend" or x is None:
        return []
    mri = genome.get("mri") or {}
    spec = GenomeSpec(frozen=genome.get("frozen", []), r_max=genome["r_max"], init_mean=0.0,
                      mri=bool(mri.get("trust")))
    searched = (genome.get("transplant") or {}).get("searched_genome") or genome["ratios"]
    try:
        derived = GenomeSpace(len(genome["ratios"]), spec, mri.get("r_mri")).full(x)
    except (ReleaseError, IndexError, TypeError):
        derived = None
    if derived == [float(r) for r in searched]:
        return []
    return ["the searched ratios do not follow from CMA-ES's recorded point search.x: the record was edited, or "
            "written by another version"]


def _tensor_files(folder: Path) -> dict[str, Path]:
    """tensor name -> the safetensors file that holds it."""
    from safetensors import safe_open

    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out.update({key: path for key in f.keys()})
    return out


def compare_tensors(published: Path, rebuilt: Path) -> tuple[int, str | None]:
    """(tensors compared, the first difference in name order or None): names, dtypes, shapes, then bytes."""
    import torch
    from safetensors import safe_open

    ours, theirs = _tensor_files(Path(rebuilt)), _tensor_files(Path(published))
    only_published, only_rebuilt = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    if only_published:
        return 0, f"the published child holds {only_published[0]}, which the rebuild does not ({len(only_published)} such)"
    if only_rebuilt:
        return 0, f"the rebuild holds {only_rebuilt[0]}, which the published child lacks ({len(only_rebuilt)} such)"
    for count, key in enumerate(sorted(theirs), start=1):
        with safe_open(str(theirs[key]), framework="pt") as f:
            a = f.get_tensor(key)
        with safe_open(str(ours[key]), framework="pt") as f:
            b = f.get_tensor(key)
        if a.dtype != b.dtype or a.shape != b.shape:
            return count, (f"first differing tensor {key}: published {a.dtype} {list(a.shape)}, "
                           f"rebuilt {b.dtype} {list(b.shape)}")
        if torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)):
            continue
        diff = (a.double() - b.double()).abs() if a.is_floating_point() else (a.long() - b.long()).abs()
        differing = int((a.reshape(-1).view(torch.uint8).reshape(a.numel(), -1)
                         != b.reshape(-1).view(torch.uint8).reshape(b.numel(), -1)).any(-1).sum())
        return count, (f"first differing tensor {key}: {differing} of {a.numel()} elements differ, largest "
                       f"|published - rebuilt| {diff.nan_to_num(nan=float('inf')).max().item():.6g} ({a.dtype})")
    return len(theirs), None
