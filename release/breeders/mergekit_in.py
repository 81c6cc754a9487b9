"""mergekit in: a two-model mergekit configuration, or a mergekit-evolve config, as a darwin-release config.

What maps (`darwin-release import-mergekit FILE [-o CONFIG]`):
- `merge_method` linear, slerp, ties, dare_ties -> `breed.method` (other methods have no breeder: an error);
- the models -> father and mother, pinned where mergekit pins them (`repo@revision`): `base_model` is the
  father when it is one of the two, else the common ancestor (`base:`, where this version has that key);
- the mother's weight, `t`, or `weight` (normalised as mergekit normalises) -> `genome.init_mean`, the start
  of every share; `density` -> `breed.density_init`; `dtype` -> `search.dtype`; DARE's `rescale`;
- mergekit-evolve's `tasks` (any lm-eval task, its `metric`) and `num_fewshot` -> `fitness.tasks`.
Everything else is listed, one line each, and left out: darwin-release searches one share per layer's
attention and FFN, so per-layer values and filters only set where the search starts.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from release.config import BreedSpec, ReleaseConfig, TaskSpec
from release.errors import ReleaseError

METHODS = ("linear", "slerp", "ties", "dare_ties")
# lm-eval task names (as mergekit-evolve gives them) -> darwin-release's fitness task names
TASK_NAMES = {"click": "click", "leaderboard_musr": "musr", "musr": "musr"}
# Top-level keys read here; any other is listed as not mapped.
_READ = {"merge_method", "models", "slices", "base_model", "parameters", "dtype"}
_EVOLVE_READ = {"genome", "tasks", "num_fewshot"}
_DTYPES = {"float32", "bfloat16", "float16"}


def _ref(text: str) -> dict:
    """mergekit's 'repo@revision' (or a bare repo) as a config entry."""
    if not isinstance(text, str):
        raise ReleaseError(f"import-mergekit: a model is given as {text!r}: give a Hub repo id (owner/name)")
    repo, _, revision = text.partition("@")
    return {"repo": repo, **({"revision": revision} if revision else {})}


def _model_name(entry) -> str:
    return entry["model"] if isinstance(entry, dict) else entry


def _mean(value, what: str, notes: list[str]) -> float | None:
    """One number for a mergekit parameter: a scalar, a gradient (a list over the layers), or conditional
    entries ({filter, value}); anything that varies is noted, and its mean is where the search starts."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        if len(value) == 1:
            return float(value[0])
        # the mean of mergekit's piecewise-linear interpolation between evenly spaced anchors
        mean = (sum(value) - (value[0] + value[-1]) / 2) / (len(value) - 1)
        notes.append(f"{what}: a gradient over the layers {value}; every share starts at its mean {mean:.4g} "
                     "(darwin-release searches one share per layer)")
        return mean
    if isinstance(value, list) and value and all(isinstance(v, dict) and "value" in v for v in value):
        numbers = [_mean(v["value"], f"{what} ({v.get('filter', 'default')})", notes) for v in value]
        mean = sum(numbers) / len(numbers)
        if what == "density":  # one density gene: the value most filters give (those at share 1 give 1)
            mean = max(sorted(set(numbers)), key=numbers.count)
        filters = [str(v.get("filter", "default")) for v in value]
        shown = ", ".join(filters) if len(filters) <= 4 else f"{len(filters)} filters: {', '.join(filters[:3])}, ..."
        start = "the density starts at the most common" if what == "density" else "every share starts at their mean"
        notes.append(f"{what}: values by filter ({shown}); {start} {mean:.4g} (darwin-release searches each "
                     "layer's attention and FFN shares and one density)")
        return mean
    raise ReleaseError(f"import-mergekit: {what} is {value!r}: give a number, a list of numbers or filter entries")


def _models(raw: dict) -> list[dict]:
    if raw.get("slices"):
        names: list[str] = []
        ranges = set()
        for piece in raw["slices"]:
            for source in piece.get("sources", []):
                names.append(source["model"])
                ranges.add(tuple(source.get("layer_range") or ()))
        if len(raw["slices"]) != 1 or len(ranges) > 1:
            raise ReleaseError("import-mergekit: the slices stack or cut layers (a passthrough/frankenmerge): "
                               "darwin-release merges two whole models layer for layer")
        return [{"model": name} for name in dict.fromkeys(names)]
    return [m if isinstance(m, dict) else {"model": m} for m in raw.get("models") or []]


def import_mergekit(raw: dict, name: str) -> tuple[dict, list[str]]:
    """(darwin-release config as a dict, what did not map: one line each) for a mergekit or mergekit-evolve config."""
    if not isinstance(raw, dict):
        raise ReleaseError("import-mergekit: the file holds no mapping: give a mergekit YAML (merge_method, models) "
                           "or a mergekit-evolve config (genome, tasks)")
    notes: list[str] = []
    evolve = "genome" in raw and isinstance(raw["genome"], dict)
    body = raw["genome"] if evolve else raw
    read = _EVOLVE_READ if evolve else _READ
    notes += [f"{key}: not mapped (darwin-release has no such setting)" for key in raw if key not in read]
    method = body.get("merge_method")
    if method not in METHODS:
        raise ReleaseError(f"import-mergekit: merge_method {method!r} has no darwin-release breeder: use one of "
                           f"{', '.join(METHODS)}")
    models = _models(body)
    base_name = body.get("base_model")
    names = [_model_name(m) for m in models]
    others = [m for m in models if _model_name(m) != base_name]
    # base_model may be listed among the models or only named (mergekit's usual TIES form): either way, with
    # one other model it is the father (every share 0 is him); with two others, their common ancestor.
    allowed = (1,) if base_name in names else (1, 2) if base_name else (2,)
    if len(others) not in allowed:
        raise ReleaseError(f"import-mergekit: {len(names)} models ({', '.join(map(str, names)) or 'none'}) with "
                           f"base_model {base_name}: darwin-release breeds exactly two parents")
    if len(others) == 1:
        father = next((m for m in models if _model_name(m) == base_name), {"model": base_name})
        mother, ancestor = others[0], None
    else:
        father, mother, ancestor = others[0], others[1], base_name
    config: dict = {"name": name, "father": _ref(_model_name(father)), "mother": _ref(_model_name(mother)),
                    "child": {"repo": f"your-name/{name}"}}
    notes.append(f"child.repo: mergekit names no output repo; written as your-name/{name}: set it before a release")
    if ancestor is not None:
        if method in ("ties", "dare_ties") and "base" in ReleaseConfig.model_fields:
            config["base"] = _ref(ancestor)
        else:
            notes.append(f"base_model {ancestor}: not mapped (no common ancestor for {method} in this version): "
                         "the father is the base")
    breed: dict = {"method": method}
    params = {**(body.get("parameters") or {})} if not evolve else {}
    mother_params, father_params = mother.get("parameters") or {}, father.get("parameters") or {}
    share = _share(method, params, father_params, mother_params, ancestor is not None, notes)
    density = _mean(mother_params.get("density", params.get("density")), "density", notes)
    if method in ("ties", "dare_ties") and density is not None:
        defaults = BreedSpec()
        breed.update(density_init=density, density_min=min(defaults.density_min, density),
                     density_max=max(defaults.density_max, density))
    if method == "dare_ties":
        rescale = params.pop("rescale", True)
        if "dare_rescale" in BreedSpec.model_fields:
            breed["dare_rescale"] = "l1" if rescale else "inverse_density"
        elif rescale:
            notes.append("rescale: mergekit's L1 rescale is not in this version: DARE rescales by 1 / density")
    for key in sorted(set(params) - {"t", "weight", "density", "normalize"}):
        notes.append(f"parameters.{key}: not mapped")
    config["breed"] = breed
    config["genome"] = {"r_max": 1.0, "init_mean": round(min(max(share, 0.0), 1.0), 6)}
    if share < 0 or share > 1:
        notes.append(f"the mother's share {share:.4g} lies outside [0, 1]: the search starts at {config['genome']['init_mean']}")
    dtype = body.get("dtype") if not evolve else None
    if dtype in _DTYPES:
        config["search"] = {"dtype": dtype}
    elif dtype is not None:
        notes.append(f"dtype {dtype}: not mapped (search.dtype takes {', '.join(sorted(_DTYPES))})")
    if evolve:
        notes += [f"genome.{key}: not mapped" for key in body
                  if key not in ("models", "merge_method", "base_model")]
    config["fitness"] = _fitness(raw.get("tasks") if evolve else None, notes, raw.get("num_fewshot") if evolve else None)
    try:
        ReleaseConfig.model_validate(config)  # what is written must load
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ReleaseError(f"import-mergekit: the imported config does not load: {where}: "
                           f"{error['msg'].removeprefix('Value error, ')}") from None
    return config, notes


def _share(method: str, params: dict, father_params: dict, mother_params: dict, over_base: bool,
           notes: list[str]) -> float:
    """The mother's share as mergekit would apply it, for the search's start."""
    if method == "slerp":
        t = _mean(params.get("t"), "parameters.t", notes)
        return 0.5 if t is None else t
    w_m = _mean(mother_params.get("weight"), "the mother's weight", notes)
    w_f = _mean(father_params.get("weight"), "the father's weight", notes)
    normalize = params.get("normalize", True)
    if method == "linear" or over_base:
        w_m, w_f = (1.0 if w_m is None else w_m), (1.0 if w_f is None else w_f)
        if normalize or abs(w_f + w_m - 1) < 1e-6:
            return w_m / (w_f + w_m) if w_f + w_m else 0.5
        notes.append(f"weights {w_f:.4g} + {w_m:.4g} with normalize: false: darwin-release's shares sum to 1; the "
                     "mother's share starts at her weight")
        return w_m
    # TIES/DARE over the father: one task vector; mergekit's normalize divides its weight by itself
    w_m = 1.0 if w_m is None else w_m
    if normalize:
        notes.append(f"normalize: true divides the mother's weight {w_m:.4g} by itself (one task vector): her "
                     "share starts at 1")
        return 1.0
    return w_m


def _fitness(tasks, notes: list[str], num_fewshot: int | None = None) -> dict:
    if not tasks:
        notes.append("fitness: none in a mergekit config; written as kind calibration (mean log-likelihood of a "
                     "built-in text): name benchmark tasks under fitness.tasks to search on them")
        return {"kind": "calibration"}
    mapped = []
    for task in tasks:
        name = TASK_NAMES.get(task.get("name"), task.get("name"))
        entry = {"name": name, "weight": float(task.get("weight", 1.0)),
                 **({"metric": task["metric"]} if task.get("metric") else {}),
                 **({"num_fewshot": num_fewshot} if num_fewshot is not None else {})}
        try:
            TaskSpec.model_validate(entry)
        except ValidationError as e:
            notes.append(f"tasks: {task.get('name')} left out ({e.errors()[0]['msg']})")
            continue
        mapped.append(entry)
    if not mapped:
        return _fitness(None, notes)
    return {"kind": "benchmark", "tasks": mapped}


def read_mergekit(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReleaseError(f"import-mergekit: {path} not found: give a mergekit YAML file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ReleaseError(f"import-mergekit: {path} is not YAML ({type(e).__name__}): give mergekit's YAML") from None


def config_yaml(config: dict, source: str, notes: list[str]) -> str:
    header = [f"# Imported from {source} by darwin-release import-mergekit."]
    header += ["# Not mapped:"] + [f"#   - {note}" for note in notes] if notes else []
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)
