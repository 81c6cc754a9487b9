"""`ffn_blend`: the cross-architecture breeder (a Gemma 4 father x a Qwen3.5 mother).

The child keeps the father whole and blends each father FFN's output with a mapped mother FFN's at a
per-layer ratio (release/breeders/hybrid.py builds the live hybrid, release/breeders/emit.py writes the child with its
trust_remote_code modeling files). Genome: one ratio per father layer, genes `r.0` ... `r.{n-1}`.
"""

from __future__ import annotations

from pathlib import Path

from release.breeders.registry import Breeder, Live, Ratios, register
from release.parents.metadata import read_folder, read_hub


@register
class FfnBlend(Breeder):
    method = "ffn_blend"
    trust_remote_code = True

    def tiny_parent_writers(self) -> dict:
        from release.tiny import write_tiny_father, write_tiny_mother  # imports torch

        return {"father": write_tiny_father, "mother": write_tiny_mother}  # Gemma 4 x Qwen3.5

    def check_parents(self, father_dir: Path, mother_dir: Path) -> None:
        from release.parents.childmap import parent_text_configs  # imports transformers

        parent_text_configs(read_folder("father", father_dir), read_folder("mother", mother_dir))

    def plan_pull(self, config, hub) -> dict:
        from release.parents.selection import select_files  # imports transformers
        from release.plan.checks import parent_checks  # imports transformers

        metas = {role: read_hub(role, hub, getattr(config, role).repo, getattr(config, role).revision)
                 for role in ("father", "mother")}
        plan = parent_checks(config, metas["father"], metas["mother"])
        return {role: select_files(meta, plan.tensors) for role, meta in metas.items()}

    def build_live(self, father_dir, mother_dir, config, device, dtype, progress: bool = False,
                   r_mri: list[float] | None = None) -> Live:
        from release.breeders.hybrid import build_search_hybrid  # imports torch
        from release.breeders.ffn_genome import GenomeSpace  # with genome.mri its full(x) already applies the MRI trust

        model = build_search_hybrid(Path(father_dir), Path(mother_dir), layer_map=config.genome.layer_map,
                                    device=device, dtype=dtype, progress=progress)
        space = GenomeSpace(model.config.num_hidden_layers, config.genome, r_mri=r_mri)
        return Live(self, model, space, record={"layer_map": list(model.config.layer_map)})

    def named_genome(self, bred: dict) -> dict[str, float]:
        # Breed records written before the registry carry no gene names: their genome is the ratio list.
        genes = bred.get("genes") or [f"r.{i}" for i in range(len(bred["genome"]))]
        return dict(zip(genes, bred["genome"]))

    def layer_ratios(self, named: dict[str, float]) -> Ratios:
        n = sum(name.startswith("r.") for name in named)
        return {"ffn": [named[f"r.{i}"] for i in range(n)]}

    def set_live(self, live: Live, ratios: Ratios, named: dict[str, float]) -> None:
        live.model.set_ratios(ratios["ffn"])

    def genome_record(self, config, bred: dict, pulled: dict, search: dict, ratios: Ratios) -> dict:
        from release.breeders.emit import genome_record  # imports torch
        from release.breeders.hybrid import MIXING_FORMULA, MIXING_RULE  # imports torch

        return genome_record(ratios["ffn"], config.genome.frozen, bred["layer_map"], config.genome.r_max,
                             MIXING_RULE, MIXING_FORMULA, search,
                             father={k: pulled["father"][k] for k in ("repo", "revision")},
                             mother={k: pulled["mother"][k] for k in ("repo", "revision")})

    def emit(self, father_dir, mother_dir, genome: dict, out: Path, max_shard_size: str,
             progress: bool = True) -> Path:
        from release.breeders.emit import emit_child  # imports torch

        return emit_child(Path(father_dir), Path(mother_dir), genome, out, max_shard_size=max_shard_size,
                          progress=progress)

    def render_card(self, config, genome: dict, results, search_log, out_dir: Path, **extra):
        from release.card.model_card import render_model_card  # imports huggingface_hub and matplotlib

        return render_model_card(config, genome, results, search_log, out_dir, **extra)

    def child_tensors(self, father_dir, mother_dir, genome: dict) -> list[str]:
        from release.breeders.hybrid import child_tensor_sources, make_child_config  # imports torch

        config = make_child_config(father_dir, mother_dir, genome["ratios"], layer_map=genome["layer_map"],
                                   stored="active")
        return list(child_tensor_sources(father_dir, mother_dir, config))
