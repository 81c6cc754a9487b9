"""Breeders: how a child is made from two parents (`breed.method`). See registry.py."""

from release.breeders.genome import Gene, GeneSpace, layer_genes
from release.breeders.registry import BREEDERS, Breeder, Live, get_breeder, methods, register

# The built-in breeders register themselves on import; the registry itself imports none of them.
from release.breeders import ffn_blend, weights  # noqa: E402, F401  (isort: skip)

__all__ = ["BREEDERS", "Breeder", "Gene", "GeneSpace", "Live", "get_breeder", "layer_genes",
           "methods", "register"]
