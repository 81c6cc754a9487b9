"""Same-architecture breeders: `linear`, `slerp`, `ties`, `dare_ties` merge the parents' weights.

Both parents must share `model_type` and every tensor name and shape (checked from the safetensors
headers before any work). The child is a plain checkpoint of the parents' own class and key layout (a
Gemma 4 `ForConditionalGeneration` parent gives a `ForConditionalGeneration` child): the father's
config, tokenizer and files, every tensor merged by `merge_ops`. It loads with stock
`AutoModelForCausalLM`, no custom code.

Genome (genes, in order): `attn.0..n-1` and `ffn.0..n-1`, the mother's share of each decoder layer's
attention and FFN (frozen layers pinned at 0, bounds [0, r_max]); `norms`, her share of everything else
(embeddings, per-layer inputs, every norm, the LM head, vision/audio towers); and for TIES/DARE
`density`, the fraction of the task vector kept (bounds from `breed`) where a share lies strictly
between 0 and 1: share 0 is the father's tensor, share 1 the mother's, whole.

With `base:` in the config (ties, dare_ties), the two parents are siblings merged over their common
ancestor: task vectors father - base and mother - base (`merge_ops.over_base`); the base's tensors stay on
the device too. Every child ships `mergekit_config.yml`, the same merge for mergekit (mergekit_out.py).

`genome.transplant: [lo, hi]` snaps, after the search, every share below lo to 0 and above hi to 1
(release/mri/transplant.py; the density gene is not snapped), kept if its fitness holds up.

The live search model is the father loaded with `AutoModelForCausalLM`; both parents' tensors stay on
the device beside it (memory: two parents + the live model, plus DARE's drop-mask noise: 2 bytes per
parameter on a GPU; on the CPU the noise as float32 and the task vector, 8 bytes),
and a candidate rewrites the live tensors in place, skipping tensors whose ratio did not change.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

import release
from release.breeders import merge_ops
from release.breeders.emit import write_shards
from release.breeders.genome import Gene, GeneSpace, layer_genes
from release.breeders.hybrid import TensorSource
from release.breeders.layout import check_same_architecture, gene_of
from release.breeders.mergekit_out import MERGEKIT_FILE, mergekit_config, mergekit_yaml
from release.breeders.registry import Breeder, Live, Ratios, register
from release.errors import ReleaseError
from release.parents.tensors import open_shard, parent_tensor
from release.run.files import swap_folder

log = logging.getLogger(__name__)

GENOME_FILE = "darwin_genome.json"
_MERGEKIT_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}  # safetensors names
# Everything of the father's folder except weights and what the release writes itself.
_SKIP_FILES = re.compile(r"^(?:.*\.safetensors|.*\.bin|.*\.pt|.*\.index\.json|README\.md|\.gitattributes|"
                         rf"{re.escape(GENOME_FILE)}|{re.escape(MERGEKIT_FILE)}|genome\.png|fitness\.png|mri\.png|health\.png)$")


def _n_layers(father_dir: Path) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(father_dir).get_text_config().num_hidden_layers


@dataclass
class _Entry:
    """One live tensor: where it is written, both parents' values, and what was last written."""

    key: str
    target: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    component: str
    layer: int | None
    cosine: float | None = None  # slerp: the parents' angle, fixed
    dare: dict | None = None  # dare_ties: the drop-mask noise, and on the CPU the task vector and mask room
    base: torch.Tensor | None = None  # ties/dare_ties over a common ancestor: its tensor
    last: tuple | None = None


class WeightsBreeder(Breeder):
    trust_remote_code = False
    uses_density = False

    @property
    def paper(self) -> dict:
        return merge_ops.PAPERS[self.method]

    def tiny_parent_writers(self) -> dict:
        from release.tiny import write_tiny_father, write_tiny_finetune  # imports transformers

        return {"father": write_tiny_father, "mother": write_tiny_finetune}  # two tiny Gemma 4s

    def check_parents(self, father_dir: Path, mother_dir: Path) -> None:
        check_same_architecture(Path(father_dir), Path(mother_dir))

    # --- genome -------------------------------------------------------------------------------------

    def genome_space(self, n_layers: int, config) -> GeneSpace:
        spec, breed = config.genome, config.breed
        if spec.layer_map is not None:
            raise ReleaseError(f"genome.layer_map is for ffn_blend (across architectures); {self.method} pairs "
                               "layer i with layer i: remove genome.layer_map")
        if getattr(spec, "mri", False) and spec.transplant:
            raise ReleaseError(f"genome.mri and genome.transplant together are not wired to breed.method "
                               f"{self.method} yet (the snap would act on the genes, not the trusted shares): "
                               "keep one of them")
        genes = layer_genes("attn", n_layers, spec) + layer_genes("ffn", n_layers, spec)
        genes.append(Gene("norms", 0.0, spec.r_max, min(spec.init_mean, spec.r_max)))
        if self.uses_density:
            genes.append(Gene("density", breed.density_min, breed.density_max, breed.density_init))
        space = GeneSpace(genes)
        if getattr(spec, "mri", False):  # the MRI trust: one more gene, read by `ratio_hooks`
            space = space.extended([Gene("tau", 0.0, 1.0, spec.mri_trust_init)])
        return space

    def ratio_hooks(self, config, r_mri: list[float] | None) -> list:
        if not getattr(config.genome, "mri", False):
            return []
        # A circle at import time: mri.weights_trust -> mri.static -> breeders.hybrid -> breeders/__init__ -> here
        from release.mri.weights_trust import trust_hook

        n = len(r_mri or [])
        if not r_mri:
            raise ReleaseError("genome.mri is on but no r_MRI per layer was given: run the mri stage first "
                               "(darwin-release mri CONFIG)")
        return [trust_hook([float(r) for r in r_mri], config.genome.r_max, [i for i in config.genome.frozen if i < n])]

    def layer_ratios(self, named: dict[str, float]) -> Ratios:
        n = sum(name.startswith("attn.") for name in named)
        return {"attn": [named[f"attn.{i}"] for i in range(n)], "ffn": [named[f"ffn.{i}"] for i in range(n)],
                "norms": [named["norms"]]}

    def transplant_genes(self, names: list[str]) -> list[int]:
        """Every share (attn.i, ffn.i, norms) snaps; the density does not: 0 or 1 means a whole parent's tensor."""
        return [i for i, n in enumerate(names) if n == "norms" or n.split(".")[0] in ("attn", "ffn")]

    def _density(self, named: dict[str, float]) -> float:
        return float(named.get("density", 1.0)) if self.uses_density else 1.0

    @staticmethod
    def _ratio(ratios: Ratios, component: str, layer: int | None) -> float:
        return float(ratios[component][0 if layer is None else layer])

    # --- live search model --------------------------------------------------------------------------

    def build_live(self, father_dir, mother_dir, config, device, dtype, progress: bool = False,
                   r_mri: list[float] | None = None, base_dir: Path | None = None) -> Live:
        """`base_dir`: the common ancestor (`base:` in the config), for TIES and DARE-TIES; None: the father."""
        from transformers import AutoModelForCausalLM

        father_dir, mother_dir = Path(father_dir), Path(mother_dir)
        tensors = check_same_architecture(father_dir, mother_dir)
        bases = self._base_tensors(father_dir, base_dir)
        seed = _seed(config)
        model = AutoModelForCausalLM.from_pretrained(father_dir, dtype=dtype).to(device).eval()
        tied = set(getattr(model, "all_tied_weights_keys", None) or {})
        targets = {k: v for k, v in model.state_dict(keep_vars=True).items() if k not in tied}
        entries = []
        with torch.no_grad():
            for key, target in targets.items():
                if key not in tensors:
                    raise ReleaseError(f"{type(model).__name__} holds {key}, which the father's checkpoint lacks: "
                                       "transformers reads this checkpoint into another layout; use a checkpoint "
                                       "saved by this transformers class")
                if not target.is_floating_point():
                    continue  # integer buffers are the father's
                (fa, mo) = tensors[key]
                with open_shard("father", fa.path, key, device=str(device)) as f:
                    a = parent_tensor("father", f, fa.path, key).to(target.dtype)
                with open_shard("mother", mo.path, key, device=str(device)) as f:
                    b = parent_tensor("mother", f, mo.path, key).to(target.dtype)
                if not torch.equal(a, target):  # transformers' silent random init of unread weights
                    raise ReleaseError(f"{type(model).__name__} did not load {key} from the father's checkpoint: "
                                       "its class reads another key layout; use a checkpoint saved by it")
                component, layer = gene_of(key)
                entry = _Entry(key, target, a, b, component, layer)
                if self.method == "slerp":
                    entry.cosine = merge_ops.slerp_cosine(a, b)
                if bases is not None:
                    with open_shard("base", bases[key].path, key, device=str(device)) as f:
                        entry.base = parent_tensor("base", f, bases[key].path, key).to(target.dtype)
                elif self.method == "dare_ties":
                    entry.dare = _dare_state(a, b, seed, key, device)
                entries.append(entry)
        n_layers = _n_layers(father_dir)
        space = self.genome_space(n_layers, config)
        hooks = self.ratio_hooks(config, r_mri)
        if hooks and len(r_mri) != n_layers:
            raise ReleaseError(f"r_MRI has {len(r_mri)} layers but the father has {n_layers}: run the mri stage "
                               "again (--force mri)")
        if generation := _generation_config(father_dir):
            model.generation_config = generation
        log.info("built the %s live model: %d tensors of %s, both parents on %s in %s", self.method,
                 len(entries), type(model).__name__, device, dtype)
        record = {"seed": seed, "model_class": type(model).__name__}
        if bases is not None:
            record["base"] = True
        if self.method == "dare_ties":
            record["dare_rescale"] = config.breed.dare_rescale
        return Live(self, model, space, record=record, hooks=hooks, state=entries)

    def set_live(self, live: Live, ratios: Ratios, named: dict[str, float]) -> None:
        density, seed = self._density(named), live.record["seed"]
        rescale = live.record.get("dare_rescale", "inverse_density")
        with torch.no_grad():
            for e in live.state:
                t = self._ratio(ratios, e.component, e.layer)
                d = _tensor_density(t, density)
                if e.last == (t, d):
                    continue
                if e.target.dtype == merge_ops.work(e.a).dtype:  # write in place: no child-sized copy
                    merge_ops.merge(self.method, e.a, e.b, t, d, seed, e.key, cosine=e.cosine, out=e.target,
                                    rescale=rescale, base=e.base, **(e.dare or {}))
                else:  # e.g. bf16 on a GPU: merged in float32, then rounded, as the emitter does
                    e.target.copy_(merge_ops.merge(self.method, e.a, e.b, t, d, seed, e.key, cosine=e.cosine,
                                                   rescale=rescale, base=e.base, **(e.dare or {})))
                e.last = (t, d)

    # --- the child ----------------------------------------------------------------------------------

    def genome_record(self, config, bred: dict, pulled: dict, search: dict, ratios: Ratios) -> dict:
        named = dict(zip(bred["genes"], bred["genome"]))
        return {
            "method": self.method,
            "paper": self.paper,
            "genes": named,
            "ratios": ratios,
            "density": self._density(named) if self.uses_density else None,
            **({"dare_rescale": bred.get("dare_rescale", "inverse_density")} if self.method == "dare_ties" else {}),
            "seed": bred["seed"],
            "frozen": list(config.genome.frozen),
            "r_max": config.genome.r_max,
            "model_class": bred["model_class"],
            "search": search,
            "father": {k: pulled["father"][k] for k in ("repo", "revision")},
            "mother": {k: pulled["mother"][k] for k in ("repo", "revision")},
            **({"base": {k: pulled["base"][k] for k in ("repo", "revision")}}
               if bred.get("base") and pulled.get("base") else {}),
            "tool": {"name": "darwin-release", "version": release.__version__},
        }

    def merged_tensor(self, key: str, a: torch.Tensor, b: torch.Tensor, genome: dict,
                      base: torch.Tensor | None = None) -> torch.Tensor:
        """The child's tensor `key` for a genome record, in the father's dtype (`base`: the ancestor's)."""
        if not a.is_floating_point():
            return a
        component, layer = gene_of(key)
        t = self._ratio(genome["ratios"], component, layer)
        density = _tensor_density(t, genome["density"] if genome.get("density") is not None else 1.0)
        return merge_ops.merge(self.method, a, b, t, density, genome["seed"], key, base=base,
                               rescale=genome.get("dare_rescale", "inverse_density")).to(a.dtype)

    def emit(self, father_dir, mother_dir, genome: dict, out: Path, max_shard_size: str,
             progress: bool = True, base_dir: Path | None = None) -> Path:
        from safetensors import safe_open

        father_dir, mother_dir, out = Path(father_dir), Path(mother_dir), Path(out)
        tensors = check_same_architecture(father_dir, mother_dir)
        bases = self._base_tensors(father_dir, base_dir)
        if (bases is not None) != bool(genome.get("base")):
            raise ReleaseError("the genome record and the emit call disagree about the common ancestor (base): "
                               "emit with the base the child was bred with")

        def merged(key: str, a: torch.Tensor) -> torch.Tensor:
            with safe_open(str(tensors[key][1].path), framework="pt") as f:
                b = f.get_tensor(key)
            if bases is None or not a.is_floating_point():
                return self.merged_tensor(key, a, b, genome)
            with safe_open(str(bases[key].path), framework="pt") as f:
                return self.merged_tensor(key, a, b, genome, base=f.get_tensor(key))

        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for path in sorted(father_dir.iterdir()):  # config, generation config, tokenizer, processors
                if path.is_file() and not _SKIP_FILES.match(path.name):
                    shutil.copy2(path, tmp / path.name)
            sources = {key: TensorSource(fa.path, key) for key, (fa, _) in tensors.items()}
            size = write_shards(sources, tmp, max_shard_size, progress, transform=merged)
            (tmp / GENOME_FILE).write_text(json.dumps(genome, indent=2) + "\n")
            (tmp / MERGEKIT_FILE).write_text(self.mergekit_yaml(genome, {k: fa for k, (fa, _) in tensors.items()}))
            swap_folder(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("emitted the %s child to %s (%.1f MB of weights)", self.method, out, size / 1e6)
        return out

    def _base_tensors(self, father_dir: Path, base_dir: Path | None) -> dict | None:
        """The ancestor's tensors by name (None: no base, or a method that needs none: linear, slerp)."""
        if base_dir is None or not self.uses_density:
            return None
        return {key: base for key, (_, base) in check_same_architecture(father_dir, Path(base_dir), "base").items()}

    def mergekit_yaml(self, genome: dict, father: dict) -> str:
        """`mergekit_config.yml` for a genome record; `father`: the father's TensorInfo by tensor name."""
        floats = {key: info for key, info in father.items() if info.dtype in _MERGEKIT_DTYPES}
        dtypes = {_MERGEKIT_DTYPES[info.dtype] for info in floats.values()}
        density = genome["density"] if genome.get("density") is not None else 1.0

        def share(key: str) -> float:
            return self._ratio(genome["ratios"], *gene_of(key))

        def tensor_density(key: str) -> float:  # over a base, share 0 is the father whole, as share 1 the mother
            t = share(key)
            return 1.0 if genome.get("base") and t == 0.0 else _tensor_density(t, density)

        config = mergekit_config(genome, sorted(floats), dtypes.pop() if len(dtypes) == 1 else None, share,
                                 tensor_density)
        return mergekit_yaml(config, genome)

    def render_card(self, config, genome: dict, results, search_log, out_dir: Path, **extra):
        from release.card.weights_card import render_weights_card  # imports huggingface_hub and matplotlib

        return render_weights_card(config, genome, results, search_log, out_dir, health=extra.get("health"),
                                   pipeline_tag=extra.get("pipeline_tag", "text-generation"))

    def child_tensors(self, father_dir, mother_dir, genome: dict) -> list[str]:
        return list(check_same_architecture(Path(father_dir), Path(mother_dir)))


def _tensor_density(t: float, density: float) -> float:
    """A share of 1 is the mother's tensor whole, as a share of 0 is the father's (what the transplant rule
    snaps to): TIES/DARE's density thins only a partial task vector."""
    return 1.0 if t == 1.0 else density


def _dare_state(a: torch.Tensor, b: torch.Tensor, seed: int, key: str, device) -> dict:
    """What a live dare_ties tensor keeps between switches. On a GPU: the noise as int16 (2 bytes a parameter;
    its bandwidth recomputes the rest). On the CPU, where elementwise passes are what a switch costs: the noise
    as float32 (one comparison pass writes the 0/1 mask into the live tensor) and the task vector b - a (one
    addcmul pass then writes the child over it): 8 bytes a parameter."""
    if torch.device(device).type != "cpu":
        return {"noise": merge_ops.dare_noise(a.shape, seed, key, device, dtype=torch.int16)}
    delta = torch.sub(merge_ops.work(b), merge_ops.work(a))
    return {"noise": merge_ops.dare_noise(a.shape, seed, key, device, dtype=torch.float32), "delta": delta,
            "l1": merge_ops.task_vector_l1(delta)}


def _seed(config) -> int:
    return config.breed.seed if config.breed.seed is not None else config.search.seed


def _generation_config(folder: Path):
    from transformers import GenerationConfig

    return GenerationConfig.from_pretrained(folder) if (folder / "generation_config.json").is_file() else None


@register
class Linear(WeightsBreeder):
    method = "linear"


@register
class Slerp(WeightsBreeder):
    method = "slerp"


@register
class Ties(WeightsBreeder):
    method = "ties"
    uses_density = True


@register
class DareTies(WeightsBreeder):
    method = "dare_ties"
    uses_density = True
