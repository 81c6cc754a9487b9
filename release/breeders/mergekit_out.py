"""mergekit out: a same-architecture child's genome as a mergekit 0.1.5 configuration (`mergekit_config.yml`).

Whoever uses mergekit can take the found merge back into it: one parameter list per method parameter,
a filter per decoder layer's attention and FFN (the module prefix, e.g. `model.layers.3.self_attn.`,
which mergekit matches as a substring, first match winning) and a last entry for everything else (the
`norms` share); parents and base pinned at the commits the child was bred from. The merge runs in
float32 (`dtype`), as ours does, and is written in the father's dtype (`out_dtype`).

What mergekit rebuilds from it:
- linear, slerp, ties: the same tensors (a test runs mergekit on the file and compares every tensor;
  the float32 arithmetic differs only in rounding order, so within one rounding step of the output dtype);
- dare_ties: the same method and parameters, not the same bytes: mergekit draws its own random drop
  masks (`torch.bernoulli`), ours are a pure function of the seed, tensor name and index. With
  `breed.dare_rescale: l1` mergekit rescales as we do (its default); with `inverse_density` the file
  gives mergekit weight t / density and `rescale: false`, the same expected task vector.
"""

from __future__ import annotations

import yaml

from release.breeders.layout import gene_module
from release.errors import ReleaseError

MERGEKIT_FILE = "mergekit_config.yml"
MERGEKIT_VERSION = "0.1.5"
_KNOWN = " (on an architecture mergekit defines: 0.1.5 has no Gemma 4 or Qwen3.5 definition)"
REPRODUCED = {  # what mergekit rebuilds from the file, in words (card and docs)
    "linear": "mergekit rebuilds this child's tensors from this file, up to float32 rounding order" + _KNOWN + ".",
    "slerp": "mergekit rebuilds this child's tensors from this file, up to float32 rounding order" + _KNOWN + ".",
    "ties": "mergekit rebuilds this child's tensors from this file (the same entries kept: ties at the cut are "
            "broken as mergekit's CPU sort breaks them), up to float32 rounding order" + _KNOWN + ".",
    "dare_ties": "mergekit runs the same method and parameters from this file but not to these bytes: it draws its "
                 "own random drop masks, where this child's are a pure function of the seed, tensor name and index.",
}


def _ref(parent: dict) -> str:
    revision = parent.get("revision")
    return f"{parent['repo']}@{revision}" if revision else parent["repo"]


def _setting(tensors: list[str], value_of) -> list[dict] | float:
    """A mergekit conditional parameter giving `value_of(tensor)` for every tensor: one filter per layer module,
    then one default; tensors a module filter would get wrong get their own full-name filter first."""
    modules: dict[str, float] = {}
    default = None
    for key in tensors:
        module = gene_module(key)
        if module is None:
            default = value_of(key) if default is None else default
        else:
            modules.setdefault(module, value_of(key))
    entries = [{"filter": m, "value": v} for m, v in modules.items()]
    default = 0.0 if default is None else default

    def resolved(key: str) -> float:  # mergekit's rule: the first filter that is a substring of the name
        return next((e["value"] for e in entries if e["filter"] in key), default)

    exact = [{"filter": key, "value": value_of(key)} for key in tensors if resolved(key) != value_of(key)]
    entries = exact + entries
    wrong = [key for key in tensors if resolved(key) != value_of(key)]
    if wrong:
        raise ReleaseError(f"tensor {wrong[0]} cannot be given its share in a mergekit config (its name is part of "
                           "another tensor's): report it with the model's tensor names")
    if not entries:
        return default
    return entries + [{"value": default}]


def mergekit_config(genome: dict, tensors: list[str], out_dtype: str | None, share_of, density_of) -> dict:
    """The mergekit configuration of a genome record (release/breeders/weights.py's darwin_genome.json).

    `tensors`: the child's floating-point tensor names; `share_of(key)` / `density_of(key)`: the mother's share
    and the density the breeder used for that tensor; `out_dtype`: the father's dtype (None: float32)."""
    method = genome["method"]
    father, mother = _ref(genome["father"]), _ref(genome["mother"])
    base = _ref(genome["base"]) if genome.get("base") else None
    share = lambda key: float(share_of(key))  # noqa: E731
    config: dict = {"merge_method": method, "dtype": "float32"}
    if out_dtype and out_dtype != "float32":
        config["out_dtype"] = out_dtype
    if method == "linear":
        config["models"] = [{"model": father, "parameters": {"weight": _setting(tensors, lambda k: 1.0 - share(k))}},
                            {"model": mother, "parameters": {"weight": _setting(tensors, share)}}]
        config["parameters"] = {"normalize": False}
    elif method == "slerp":
        config["base_model"] = father
        config["models"] = [{"model": father}, {"model": mother}]
        config["parameters"] = {"t": _setting(tensors, share)}
    elif method in ("ties", "dare_ties"):
        l1 = method == "ties" or genome.get("dare_rescale", "inverse_density") == "l1"
        if method == "ties":
            weight_of = share
        elif l1:
            weight_of = share
        else:  # the paper's 1 / density, given to mergekit as the weight (mergekit's rescale is off)
            weight_of = lambda k: share(k) / density_of(k)  # noqa: E731
        density = lambda k: float(density_of(k))  # noqa: E731
        if base is None:
            config["base_model"] = father
            config["models"] = [{"model": mother, "parameters": {"weight": _setting(tensors, weight_of),
                                                                  "density": _setting(tensors, density)}}]
        else:  # two task vectors over the common ancestor, weighted 1 - t and t
            father_weight = (lambda k: (1.0 - share(k)) / density_of(k)) if not l1 else (lambda k: 1.0 - share(k))
            config["base_model"] = base
            config["models"] = [
                {"model": father, "parameters": {"weight": _setting(tensors, father_weight),
                                                 "density": _setting(tensors, density)}},
                {"model": mother, "parameters": {"weight": _setting(tensors, weight_of),
                                                 "density": _setting(tensors, density)}}]
        config["parameters"] = {"normalize": False}
        if method == "dare_ties":
            config["parameters"]["rescale"] = l1
    else:
        raise ReleaseError(f"breed.method {method} has no mergekit form")
    return config


def mergekit_yaml(config: dict, genome: dict) -> str:
    header = (f"# The merge of this child as a mergekit {MERGEKIT_VERSION} configuration (darwin-release "
              f"{genome.get('tool', {}).get('version', '')}, breed.method {genome['method']}).\n"
              f"# {REPRODUCED[genome['method']]}\n")
    return header + yaml.safe_dump(config, sort_keys=False, width=120)
