"""The breeder registry: how a child is made from two parents, chosen by `breed.method` in the config.

The pipeline asks the breeder, never branches on the method itself (as mergekit keeps merge methods in a
registry). Every breeder can
  - build the live search model from the parents (`build_live`), whose `apply(genome)` switches the
    candidate in place: the search only ever calls that, on a genome from the breeder's `GeneSpace`;
  - turn a genome into per-layer ratios per component (`layer_ratios`), the hook point where other
    capabilities (the MRI trust weighting, the transplant rule) adjust ratios before they are applied;
  - write the recipe (`genome_record`, darwin_genome.json) and the child folder (`emit`), and list the
    child's tensors (`child_tensors`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from release.errors import ReleaseError

# component -> one ratio per layer (e.g. {"ffn": [...]}; same-architecture breeders add "attn", ...)
Ratios = dict[str, list[float]]
# A ratio hook: (ratios, the genome by gene name) -> adjusted ratios, applied in order by `Live.apply` in the
# search; whoever adds one must pass the same hooks to `Breeder.ratios` when the child is emitted.
RatioHook = Callable[[Ratios, dict[str, float]], Ratios]


@dataclass
class Live:
    """The live search model of one breeder: `apply(genome)` makes `model` the child of that genome."""

    breeder: Breeder
    model: Any  # a torch module in eval mode, on its device: what the fitness scores
    space: Any  # a GeneSpace, or search.GenomeSpace (ffn_blend's, with the MRI trust): names, named, full
    record: dict = field(default_factory=dict)  # breeder facts the breed stage records (e.g. layer_map)
    hooks: list[RatioHook] = field(default_factory=list)
    state: Any = None  # the breeder's own (e.g. both parents' tensors)

    def apply(self, genome: list[float]) -> None:
        named = self.space.named(genome)
        self.breeder.set_live(self, self.breeder.ratios(named, self.hooks), named)


class Breeder(ABC):
    method: ClassVar[str]
    # True when the child ships its own modeling code (loading it needs trust_remote_code=True).
    trust_remote_code: ClassVar[bool]
    # The method's paper for the card, {"title": ..., "url": ...}, or None.
    paper: ClassVar[dict | None] = None

    @abstractmethod
    def check_parents(self, father_dir: Path, mother_dir: Path) -> None:
        """Raise a one-line ReleaseError when this method cannot breed these parents."""

    @abstractmethod
    def build_live(self, father_dir: Path, mother_dir: Path, config, device, dtype, progress: bool = False,
                   r_mri: list[float] | None = None) -> Live:
        """The live search model, with the breeder's genome space for `config.genome` (`r_mri`: per-layer
        MRI ratios when `genome.mri` is on)."""

    @abstractmethod
    def layer_ratios(self, named: dict[str, float]) -> Ratios:
        """Per-layer ratios per component for one genome (by gene name), before any hook."""

    @abstractmethod
    def set_live(self, live: Live, ratios: Ratios, named: dict[str, float]) -> None:
        """Write one candidate into the live model, in place."""

    @abstractmethod
    def genome_record(self, config, bred: dict, pulled: dict, search: dict, ratios: Ratios) -> dict:
        """darwin_genome.json for the chosen genome (`bred["genome"]`, applied as `ratios`)."""

    @abstractmethod
    def emit(self, father_dir: Path, mother_dir: Path, genome: dict, out: Path, max_shard_size: str,
             progress: bool = True) -> Path:
        """Write the child folder for `genome` (a genome_record) at `out`, atomically."""

    @abstractmethod
    def render_card(self, config, genome: dict, results: dict | None, search_log: Path | None, out_dir: Path,
                    **extra):
        """Write the child's model card (README.md and its charts) into `out_dir`."""

    @abstractmethod
    def child_tensors(self, father_dir: Path, mother_dir: Path, genome: dict) -> list[str]:
        """The names of the tensors the child of `genome` stores."""

    def plan_pull(self, config, hub) -> dict | None:
        """Check the parents from their configs and safetensors headers (no weights) and return, per role, the
        `release.parents.selection.PullSelection` of files to download; None = download the usual patterns."""
        return None

    def tiny_parent_writers(self) -> dict[str, Callable[..., Path]]:
        """Writers of tiny parents this method can breed, `{"father": write(out, seed), "mother": ...}`,
        published by the embedded default configs (`tiny_parents: true`)."""
        raise ReleaseError(f"breed.method {self.method} has no tiny parents: set tiny_parents: false")

    def ratio_hooks(self, config, r_mri: list[float] | None) -> list[RatioHook]:
        """The ratio hooks of this breeder's genome for `config` (the same in the search and at emit)."""
        return []

    def transplant_genes(self, names: list[str]) -> list[int] | None:
        """The genome positions the transplant rule snaps to 0 or 1 (shares, not e.g. a density); None = all."""
        return None

    def named_genome(self, bred: dict) -> dict[str, float]:
        """The bred genome (the breed stage's record) by gene name."""
        return dict(zip(bred["genes"], bred["genome"]))

    def ratios(self, named: dict[str, float], hooks: list[RatioHook] = ()) -> Ratios:
        """The ratios a genome (by gene name) applies: `layer_ratios`, then each hook in order."""
        ratios = self.layer_ratios(named)
        for hook in hooks:
            ratios = hook(ratios, named)
        return ratios


BREEDERS: dict[str, type[Breeder]] = {}


def register(cls: type[Breeder]) -> type[Breeder]:
    BREEDERS[cls.method] = cls
    return cls


def get_breeder(method: str) -> Breeder:
    if method not in BREEDERS:
        raise ReleaseError(f"breed.method {method!r} is not a breeder: choose one of {', '.join(sorted(BREEDERS))}")
    return BREEDERS[method]()


def methods() -> list[str]:
    return sorted(BREEDERS)
