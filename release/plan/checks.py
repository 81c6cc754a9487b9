"""Checks that need no weights: the config's own, then the parents' (configs and safetensors headers).

Each failure is a one-line ReleaseError raised before anything large is downloaded. The parent checks
run on `ParentMeta`, so the pull stage runs the very same ones before it downloads.
"""

from __future__ import annotations

from dataclasses import dataclass

from modeling.configuration_darwin import DarwinConfig
from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.parents.childmap import ChildTensor, child_config, child_tensors
from release.parents.metadata import ParentMeta


def config_checks(config: ReleaseConfig) -> list[str]:
    """The config's checks beyond its schema (the schema ran at load); returns what was checked."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from release.breeders.emit import parse_size  # imports torch

    checked = []
    repos = {"father.repo": config.father.repo, "mother.repo": config.mother.repo, "child.repo": config.child.repo}
    if config.base:
        repos["base.repo"] = config.base.repo
    if config.space:
        repos["space.repo"] = config.space.repo
    for field, repo in repos.items():
        try:
            validate_repo_id(repo)
        except HFValidationError as e:
            raise ReleaseError(f"{field} {repo!r} is not a valid Hub repo id ({str(e).splitlines()[0]}): "
                               "use namespace/name with letters, digits, '-', '_' and '.'") from None
    checked.append("repo ids")
    if config.child.repo in (config.father.repo, config.mother.repo):
        raise ReleaseError(f"child.repo {config.child.repo} is a parent's repo: the push would overwrite the "
                           "parent; choose another child.repo")
    parse_size(config.child.max_shard_size)
    checked.append("child.max_shard_size")
    text = config.fitness.calibration_text
    if config.fitness.kind == "calibration" and text is not None:
        if not text.is_file():
            raise ReleaseError(f"fitness.calibration_text {text} not found: give the path of a text file")
        checked.append("fitness.calibration_text")
    return checked


@dataclass
class ParentPlan:
    """What the parents' metadata says about the child: its search-form config and tensor list."""

    father: ParentMeta
    mother: ParentMeta
    config: DarwinConfig  # the search form: every mapped mother FFN stored
    tensors: dict[str, ChildTensor]
    genome_dims: dict[str, int]  # name -> number of CMA-ES dimensions it adds
    frozen: list[int]

    @property
    def n_father_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def n_mother_layers(self) -> int:
        return int(self.mother.config.get("text_config", self.mother.config)["num_hidden_layers"])


def genome_dimensions(config: ReleaseConfig, n_layers: int) -> dict[str, int]:
    """CMA-ES dimensions by name: one ratio per free father layer (frozen ones pinned at 0), plus the
    MRI trust tau with `genome.mri`. Further genome extensions add their entries here."""
    from release.breeders.ffn_genome import GenomeSpace  # imports torch

    # Checks frozen layers and scales against the father; r_MRI is measured later (mri stage): a placeholder
    # of the right length is enough to count the dimensions.
    space = GenomeSpace(n_layers, config.genome, r_mri=[0.0] * n_layers if config.genome.mri else None)
    dims = {"ratios": len(space.free)}
    if config.genome.mri:
        dims["mri tau"] = 1
    assert sum(dims.values()) == space.dimensions, (dims, space.dimensions)
    return dims


def parent_checks(config: ReleaseConfig, father: ParentMeta, mother: ParentMeta) -> ParentPlan:
    """Architectures, hidden sizes, layer map, frozen layers, and every child tensor's source and shape."""
    search_config = child_config(father, mother, None, layer_map=config.genome.layer_map, stored="all")
    tensors = child_tensors(father, mother, search_config)
    dims = genome_dimensions(config, search_config.num_hidden_layers)
    return ParentPlan(father, mother, search_config, tensors, dims, list(config.genome.frozen))
