"""Genome spaces: the named, bounded numbers CMA-ES searches, and how its free coordinates map to them.

A genome is a flat list of floats, one per `Gene`, in the space's order. Some genes are pinned (frozen
layers): CMA-ES never sees them, `full(x)` puts their value back. Breeders build their own space from the
config; other capabilities add genes (`extended`), e.g. the MRI trust weight, without the search knowing.
"""

from __future__ import annotations

from dataclasses import dataclass

from release.config import GenomeSpec
from release.errors import ReleaseError


@dataclass(frozen=True)
class Gene:
    name: str
    low: float
    high: float
    init: float
    scale: float | None = None  # CMA-ES step-size scale (CMA_stds); None = 1
    pinned: float | None = None  # not searched: always this value

    def clip(self, v: float) -> float:
        return float(min(max(v, self.low), self.high))


class GeneSpace:
    """Maps CMA-ES's free coordinates to a full genome; bounds, start point and step scales per gene."""

    def __init__(self, genes: list[Gene]):
        names = [g.name for g in genes]
        if len(set(names)) != len(names):
            raise ValueError(f"gene names repeat: {names}")
        self.genes = list(genes)
        self.names = names
        self.free = [i for i, g in enumerate(genes) if g.pinned is None]
        if not self.free:
            raise ReleaseError("genome.frozen freezes every layer: leave at least one layer free to search")
        free = [genes[i] for i in self.free]
        self.x0 = [min(max(g.init, g.low), g.high) for g in free]
        scales = [g.scale for g in free]
        self.stds = None if all(s is None for s in scales) else [1.0 if s is None else s for s in scales]
        lows, highs = [g.low for g in free], [g.high for g in free]
        # cma takes scalars when every gene has the same bounds (and then behaves exactly as before).
        uniform = len(set(lows)) == 1 and len(set(highs)) == 1
        self.bounds = [lows[0], highs[0]] if uniform else [lows, highs]

    def full(self, x) -> list[float]:
        genome = [g.pinned for g in self.genes]
        for i, v in zip(self.free, x):
            genome[i] = self.genes[i].clip(v)
        return [float(v) for v in genome]

    def named(self, genome: list[float]) -> dict[str, float]:
        if len(genome) != len(self.genes):
            raise ReleaseError(f"the genome has {len(genome)} values, this genome space has {len(self.genes)} "
                               f"genes ({', '.join(self.names[:4])}, ...): was it bred with another config?")
        return dict(zip(self.names, genome))

    def describe(self, x) -> dict:
        """What the search log records beside the genome: the MRI trust tau when it is a gene (every other
        gene is in the genome)."""
        return {} if "tau" not in self.names else {"tau": self.tau(x)}

    def tau(self, x) -> float | None:
        """The MRI trust weight, when a ratio hook reads it from the genome's `tau` gene (registry.RatioHook)."""
        return None if "tau" not in self.names else self.full(x)[self.names.index("tau")]

    def extended(self, genes: list[Gene]) -> GeneSpace:
        """This space with more genes appended (existing genomes keep their leading positions)."""
        return GeneSpace(self.genes + list(genes))


def layer_genes(prefix: str, n_layers: int, spec: GenomeSpec) -> list[Gene]:
    """One ratio gene per layer, `{prefix}.{i}` in [0, r_max]; frozen layers pinned at 0."""
    bad = [i for i in spec.frozen if i >= n_layers]
    if bad:
        raise ReleaseError(f"genome.frozen names layers {bad}, but the father has {n_layers} layers (0-{n_layers - 1})")
    if spec.scales is not None and len(spec.scales) != n_layers:
        raise ReleaseError(f"genome.scales has {len(spec.scales)} entries; give one per father layer ({n_layers})")
    frozen = set(spec.frozen)
    return [Gene(f"{prefix}.{i}", 0.0, spec.r_max, min(spec.init_mean, spec.r_max),
                 scale=None if spec.scales is None else spec.scales[i], pinned=0.0 if i in frozen else None)
            for i in range(n_layers)]
