"""ffn_blend's genome space: one FFN blend ratio per father layer, and with `genome.mri` the MRI trust tau.

CMA-ES searches the free layers' ratios in [0, r_max] (frozen layers are pinned at 0); with the MRI
trust it also searches tau, and a candidate's ratios become tau * r_MRI + (1 - tau) * g.
"""

from __future__ import annotations

from release.config import GenomeSpec
from release.errors import ReleaseError
from release.mri.trust import trust_weighted


class GenomeSpace:
    """Maps CMA-ES's free coordinates to a full genome: frozen layers pinned at 0, bounds [0, r_max].

    With `genome.mri` the last coordinate is the MRI trust tau in [0, 1], and a candidate's ratios are
    clip(tau * r_MRI + (1 - tau) * g, 0, r_max) (`release.mri.trust`); without it the space is exactly the
    ratios of the free layers.
    """

    def __init__(self, n_layers: int, spec: GenomeSpec, r_mri: list[float] | None = None):
        bad = [i for i in spec.frozen if i >= n_layers]
        if bad:
            raise ReleaseError(f"genome.frozen names layers {bad}, but the father has {n_layers} layers (0-{n_layers - 1})")
        if spec.scales is not None and len(spec.scales) != n_layers:
            raise ReleaseError(f"genome.scales has {len(spec.scales)} entries; give one per father layer ({n_layers})")
        self.n_layers = n_layers
        self.r_max = spec.r_max
        self.frozen = list(spec.frozen)
        self.free = [i for i in range(n_layers) if i not in set(spec.frozen)]
        if not self.free:
            raise ReleaseError("genome.frozen freezes every layer: leave at least one layer free to search")
        self.x0 = [min(spec.init_mean, spec.r_max)] * len(self.free)
        self.stds = None if spec.scales is None else [spec.scales[i] for i in self.free]
        self.bounds = [0.0, spec.r_max]
        self.r_mri = None
        if spec.mri:
            if r_mri is None or len(r_mri) != n_layers:
                raise ReleaseError("genome.mri is on but no r_MRI per father layer was given: run the mri stage "
                                   "first (darwin-release mri CONFIG)")
            self.r_mri = [float(r) for r in r_mri]
            self.x0.append(spec.mri_trust_init)
            self.stds = None if self.stds is None else [*self.stds, 1.0]
            self.bounds = [[0.0] * len(self.free) + [0.0], [spec.r_max] * len(self.free) + [1.0]]

    @property
    def dimensions(self) -> int:
        return len(self.x0)

    def tau(self, x) -> float | None:
        return None if self.r_mri is None else float(min(max(x[-1], 0.0), 1.0))

    def full(self, x) -> list[float]:
        genome = [0.0] * self.n_layers
        for i, v in zip(self.free, x):
            genome[i] = float(min(max(v, 0.0), self.r_max))
        if self.r_mri is None:
            return genome
        return trust_weighted(self.tau(x), self.r_mri, genome, self.r_max, self.frozen)

    @property
    def names(self) -> list[str]:
        """The genome's gene names (what a breeder reads the genome by): the ratio of each father layer."""
        return [f"r.{i}" for i in range(self.n_layers)]

    def named(self, genome: list[float]) -> dict[str, float]:
        if len(genome) != self.n_layers:
            raise ReleaseError(f"the genome has {len(genome)} ratios, expected one per father layer ({self.n_layers})")
        return dict(zip(self.names, genome))

    def describe(self, x) -> dict:
        """What the search log records beside the genome: tau and r_MRI with MRI trust, else nothing."""
        return {} if self.r_mri is None else {"tau": self.tau(x), "r_mri": self.r_mri}
