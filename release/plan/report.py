"""`darwin-release run CONFIG --plan`: checks and costs, printed for people.

Exit status: 0 when every check ran and passed; 2 (a ReleaseError) on the first failing check; 1 when
the parents could not be checked (Hub unreachable): the plan then says so and never calls them valid.
For the embedded default, parents that are not published yet are reported as such (the first run
publishes them) and the plan exits 0: they are built by this tool, there is nothing of theirs to check.
"""

from __future__ import annotations

import contextlib
import logging
import os

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.hub.session import open_hub
from release.parents.metadata import read_hub
from release.plan.costs import (GPUS, UTILISATION, count_tokens, diagnostics_peak, estimate, peak_forward,
                                probe_positions)
from release.plan.preflight import check_values, check_write_access, licence_warnings, parent_terms
from release.plan.requests import TOKENIZER_FILES, search_requests
from release.run.stages import HUB_STAGES, STAGES

log = logging.getLogger(__name__)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n}"


def _count(n: float) -> str:
    for unit, f in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= f:
            return f"{n / f:.2f}{unit}"
    return str(int(n))


def _duration(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _unreachable(e: ReleaseError) -> bool:
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(e.__cause__, (httpx2.TransportError, LocalEntryNotFoundError, ConnectionError))


def search_dtype(config: ReleaseConfig) -> str:
    import torch

    from release.device import pick_dtype  # imports torch

    device = config.search.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return str(pick_dtype(config.search.dtype, torch.device(device))).removeprefix("torch.")


def print_plan(config: ReleaseConfig, config_path: str, dry_run: bool, gpu: str | None = None) -> int:
    with open_hub(config) as session:  # first: huggingface_hub reads HF_ENDPOINT when first imported
        status = _checks(config, config_path, session.hub, gpu)
    _stages(config, dry_run)
    return status


def _checks(config: ReleaseConfig, config_path: str, hub, gpu: str | None) -> int:
    from huggingface_hub.utils import disable_progress_bars

    from release.plan.checks import config_checks  # imports transformers

    disable_progress_bars()  # the plan's reads are small: their bars would only hide the report

    checked = config_checks(config) + check_values(config)
    print(f"config {config_path}: valid ({', '.join(['schema', *checked])})")
    print(f"  father  {config.father.repo}@{config.father.revision}")
    print(f"  mother  {config.mother.repo}@{config.mother.revision}")
    if config.base:
        print(f"  base    {config.base.repo}@{config.base.revision} (common ancestor: task vectors over it)")
    print(f"  child   {config.child.repo}" + (f"   Space {config.space.repo}" if config.space else ""))
    frozen = ",".join(map(str, config.genome.frozen)) or "none"
    print(f"  genome  r_max {config.genome.r_max}, frozen layers {frozen}")
    g = config.genome
    trust = f"on (tau from {g.mri_trust_init:g})" if g.mri else "off"
    transplant = f"below {g.transplant[0]:g} / above {g.transplant[1]:g}" if g.transplant else "off"
    dims = "one ratio per unfrozen father layer" + (" + tau" if g.mri else "")
    print(f"  MRI     trust {trust}; transplant {transplant}; CMA-ES searches {dims}")
    tasks = " + ".join(f"{t.name} x{t.weight}" for t in config.fitness.tasks) or config.fitness.kind
    print(f"  fitness {tasks}; search popsize {config.search.popsize}, device {config.search.device}, "
          f"dtype {config.search.dtype}")
    print(f"  hub     {config.hub.endpoint or 'the Hugging Face Hub (or HF_ENDPOINT)'}")
    _token(config, hub)
    return _parents(config, hub, gpu)


def _token(config: ReleaseConfig, hub) -> None:
    try:
        print(f"  {check_write_access(config, hub, required=False)}")
    except ReleaseError as e:
        if not _unreachable(e):
            raise
        print("  token: NOT CHECKED, the Hub is unreachable")


def _terms(config: ReleaseConfig, hub) -> None:
    terms = parent_terms(config, hub)
    print("licences:")
    for t in terms:
        print(f"  {t.describe()}")
    child = config.card.license + (f" ({config.card.license_name})" if config.card.license_name else "")
    print(f"  child   {config.child.repo}: licence {child} (card.license)")
    for warning in licence_warnings(config, terms):
        print(f"warning: {warning}")


def _stages(config: ReleaseConfig, dry_run: bool) -> None:
    print("planned stages:")
    for stage in STAGES:
        note = ""
        if dry_run and stage in HUB_STAGES:
            note = "  (skipped: --dry-run)"
        elif stage == "evaluate" and not config.fitness.tasks:
            note = "  (skipped: no benchmark tasks)"
        elif stage == "space" and not config.space:
            note = "  (skipped: no space in config)"
        print(f"  {stage}{note}")


def _parents(config: ReleaseConfig, hub, gpu: str | None) -> int:
    from release.parents.selection import select_files  # imports transformers
    from release.plan.checks import parent_checks  # imports transformers

    if config.tiny_parents and not all(hub.api.repo_exists(r.repo) for r in (config.father, config.mother)):
        print("parents: the tiny parents are not on the local endpoint yet; the first run without --plan "
              "publishes them (parent checks and costs need them)")
        return 0
    from release.breeders import get_breeder  # imports torch

    try:
        if get_breeder(config.breed.method).plan_pull(config, hub) is None:  # the pull's own checks, first
            print(f"parents: breed.method {config.breed.method} does not plan from headers; its checks run at pull")
            _terms(config, hub)
            return 0
        father = read_hub("father", hub, config.father.repo, config.father.revision)
        mother = read_hub("mother", hub, config.mother.repo, config.mother.revision)
    except ReleaseError as e:
        if not _unreachable(e):
            raise
        print(f"parents: NOT CHECKED, the Hub is unreachable ({e}); the parent checks and costs need it")
        return 1
    plan = parent_checks(config, father, mother)
    print(f"parents: valid (configs and safetensors headers read from {hub.endpoint}, no weights)")
    for meta in (father, mother):
        text = meta.config.get("text_config", meta.config)
        print(f"  {meta.role:<7} {meta.model_type} @ {meta.revision[:12]}: {text['num_hidden_layers']} layers, "
              f"hidden {text['hidden_size']}, FFN {text['intermediate_size']}, {len(meta.tensors)} tensors")
    mapped = plan.config.layer_map
    print(f"  layer map {'(config)' if config.genome.layer_map else '(default)'}: {mapped}")
    print(f"  child tensors: {len(plan.tensors)}, every one found with the shape the child needs")
    dims = " + ".join(f"{n} {name}" for name, n in plan.genome_dims.items())
    print(f"  genome: {sum(plan.genome_dims.values())} CMA-ES dimensions ({dims}; "
          f"{len(config.genome.frozen)} frozen layers pinned at 0)")
    _terms(config, hub)
    print("cost:")
    total_fetch = total_repo = 0
    for meta in (father, mother):
        sel = select_files(meta, plan.tensors)
        total_fetch, total_repo = total_fetch + sel.fetch_bytes, total_repo + sel.repo_bytes
        skipped = f", skips {len(sel.skipped)} shard(s) without text weights" if sel.skipped else ""
        print(f"  download {meta.role}: {_size(sel.fetch_bytes)} of {_size(sel.repo_bytes)}{skipped}")
    print(f"  download total: {_size(total_fetch)} of {_size(total_repo)}")
    _costs(config, hub, plan, gpu)
    return 0


def _costs(config: ReleaseConfig, hub, plan, gpu: str | None) -> None:
    from transformers import AutoTokenizer

    dtype = search_dtype(config)
    count = None
    pulled = hub.pull(config.father.repo, plan.father.revision, allow_patterns=TOKENIZER_FILES)
    tokenizer = AutoTokenizer.from_pretrained(pulled.path)
    if config.fitness.kind == "benchmark":
        # lm-eval and datasets draw bars while building the requests: noise in a report.
        max_length = max(plan.config.max_position_embeddings, 4096)
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            requests = search_requests(config, tokenizer, max_length)
        count = count_tokens(requests, config.fitness.batch_size, max_length, config.fitness.scorer)
    est = estimate(plan, count, dtype)
    print(f"  search hybrid: {_count(est.hybrid_params)} parameters, {_size(est.hybrid_bytes)} in {dtype}")
    _diagnostics(config, plan, dtype, tokenizer, est)
    if count is None:
        print("  tokens, memory and time per candidate: only estimated for benchmark fitness")
        return
    kinds = {r.kind for r in requests}
    bound = "; generation counted at max_gen_toks: an upper bound" if "generate" in kinds else ""
    print(f"  tokens per candidate: {count.tokens:,} ({count.requests} requests from the search subsets, "
          f"longest prompt {count.longest} tokens, father's tokenizer{bound})")

    rows, positions, keep = peak_forward(plan, count, dtype)
    print(f"  peak memory of one evaluation batch: {_size(est.peak_bytes)} (hybrid + a forward of {rows} x "
          f"{positions} positions, logits kept for {keep}, at fitness.batch_size {config.fitness.batch_size})")
    print(f"  FLOPs per candidate: {est.flops:.3g}")
    evaluations = config.search.popsize * (config.search.max_generations or 1)
    if config.search.max_evaluations:
        evaluations = min(evaluations, config.search.max_evaluations)
    names = [gpu] if gpu else list(GPUS)
    print(f"  time at {UTILISATION:.0%} of dense bf16 peak (per candidate / whole search of {evaluations} "
          f"candidates = popsize {config.search.popsize} x generations):")
    for name in names:
        per = est.seconds[name]
        print(f"    {name:<5} {GPUS[name] / 1e12:5.0f} TFLOP/s: {_duration(per)} / {_duration(per * evaluations)}")


def _diagnostics(config: ReleaseConfig, plan, dtype: str, tokenizer, est) -> None:
    """The streaming diagnostics' peak beside the search's (its hybrid, plus a batch when that is known)."""
    peak = diagnostics_peak(plan, dtype, probe_positions(tokenizer, config.mri.prompts_per_domain, config.search.seed))
    search = est.peak_bytes or est.hybrid_bytes
    health = f"health check {_size(peak.health)}" if config.health.enabled else "health check off"
    print(f"  diagnostics peak memory on the search device in {dtype}: MRI {_size(peak.mri)}, {health}, against "
          f"the search's {_size(search)}")
    print(f"    (they stream one model at a time and keep the activations of {peak.probe_positions:,} probe positions; "
          f"the health check's is for the largest child, every free layer blending; on CPU its RSS adds up to "
          f"{_size(peak.child_stored)} of the child's shards mapped while it loads)")
