"""The release pipeline: pull -> mri -> breed -> emit -> health -> evaluate -> card -> push -> space -> verify.

Every stage reads the config and earlier stages' results and writes into `runs/<name>/`; the StageBook
skips a stage whose inputs have not changed. `dry_run` does everything except writing to the Hub.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from release.config import BreedSpec, ReleaseConfig
from release.errors import ReleaseError
from release.hub.reproduce import library_versions
from release.hub.session import HubSession, open_hub
from release.hub.space import prepare_space_folder, space_secrets, space_variables
from release.hub.verify import verify_child
from release.mri.stage import (after_search, check_before_push, genome_mri_record, mri_summary, search_fingerprint,
                               search_r_mri, stage_health, stage_mri)
from release.plan.preflight import check_values, check_write_access
from release.run.files import remove_orphans, write_json
from release.run.lock import hold_run_lock
from release.run.manifest import vouched_folder
from release.run.records import (Bred, Carded, Deployed, Diagnosis, Emitted, Evaluated, Health, Parent, Pulled,
                                 Pushed, Verified)
from release.run.stages import HUB_STAGES, STAGE_HELP, STAGES, StageBook, digest, folder_digest, snapshot_digest
from release.search.key import fitness_key
from release.ui.output import GenerationLines, stage_line
from release.zoo.parents import zoo_parent_writers

log = logging.getLogger(__name__)



# --- stages -------------------------------------------------------------------------------------------


def stage_pull(config: ReleaseConfig, session: HubSession, dry_run: bool,
               rehash: bool = False) -> tuple[Pulled, list[Path]]:
    """Download the parents. A breeder that can plan from the parents' configs and headers (ffn_blend, as
    --plan does) checks them first and names the files it reads: only those are downloaded."""
    from release.breeders import get_breeder  # imports torch: kept out of --help and --plan's import
    from release.parents.selection import write_view  # imports transformers

    hub = session.hub
    if config.tiny_parents:
        publish_tiny_parents(config, hub, dry_run)
    selections = get_breeder(config.breed.method).plan_pull(config, hub)  # one-line errors before any download
    result = {}
    for role in _roles(config):
        ref, selection = getattr(config, role), (selections or {}).get(role)
        extra = {} if selection is None else {"allow_patterns": selection.files}
        # Blobs already checked against their Hub ids are remembered here, so a rerun does not hash them again.
        pulled = hub.pull(ref.repo, selection.revision if selection else ref.revision,
                          verified=config.run_dir / "pull" / "verified.json", rehash=rehash, **extra)
        if not (pulled.path / "config.json").is_file():  # e.g. a repo created by an upload that never came
            raise ReleaseError(f"pull: the {role} {ref.repo}@{pulled.revision[:12]} holds no config.json, so no "
                               "checkpoint: publish it completely (or name another revision), then run again")
        content = snapshot_digest(pulled.path)
        if selection is None:
            result[role] = Parent(ref.repo, pulled.revision, str(pulled.path), content)
            continue
        # transformers opens every shard an index names: the stages read a view that names only ours.
        view = write_view(pulled.path, config.run_dir / "parents" / role)
        result[role] = Parent(ref.repo, pulled.revision, str(view), content, fetched_bytes=selection.fetch_bytes,
                              repo_bytes=selection.repo_bytes, skipped_shards=selection.skipped)
        log.info("pulled %s: %d of %d bytes (skipped %s)", role, selection.fetch_bytes, selection.repo_bytes,
                 ", ".join(selection.skipped) or "nothing")
    return Pulled(**result), [Path(parent.path) for parent in result.values()]


def _roles(config: ReleaseConfig) -> tuple[str, ...]:
    """The models a release pulls: both parents, and their common ancestor when the config names one."""
    return ("father", "mother", "base") if config.base else ("father", "mother")


def moved_on(config: ReleaseConfig, session: HubSession, pulled: Pulled) -> list[str]:
    """Parents pinned at an earlier pull whose configured branch has a newer commit now."""
    notes = []
    for role in _roles(config):
        ref, pinned = getattr(config, role), getattr(pulled, role).revision
        if ref.revision == pinned:  # a commit sha in the config: it cannot move
            continue
        try:
            head = session.hub.head(ref.repo, revision=ref.revision)
        except ReleaseError:
            continue  # pull's own check already decided the pinned commit still resolves
        if head != pinned:
            notes.append(f"{role} {ref.repo}@{ref.revision} has moved on to {head[:12]} since it was pulled; "
                         f"this release keeps {pinned[:12]} (run with --force pull to take the new commit)")
    return notes


def publish_tiny_parents(config: ReleaseConfig, hub, dry_run: bool) -> None:
    """Embedded default: put the tiny parents on the endpoint unless it holds them complete.

    Judged by content: a publish killed between creating the repo and uploading leaves an empty repo,
    which is filled now (one commit that makes it hold exactly the tiny parent).
    """
    from release.breeders import get_breeder  # imports torch

    if config.tiny_parents == "zoo":
        writers = zoo_parent_writers(config.breed.method, base=config.base is not None)
    else:
        writers = get_breeder(config.breed.method).tiny_parent_writers()
    for role, write in writers.items():
        repo = getattr(config, role).repo
        if hub.holds_checkpoint(repo):
            continue
        if dry_run:
            raise ReleaseError(f"--dry-run cannot publish the tiny {role} {repo}: run once without --dry-run")
        with tempfile.TemporaryDirectory() as tmp:
            hub.create_repo(repo)
            hub.commit_exactly(write(Path(tmp) / role, seed=config.search.seed), repo, "main",
                               f"Tiny {role} for the darwin-release embedded default")
        print(f"published the tiny {role} to {repo}")


def stage_breed(config: ReleaseConfig, pulled: Pulled, resume: bool, progress: bool,
                mri: Diagnosis | None = None) -> tuple[Bred, list[Path]]:
    from release.search.cmaes import fingerprint, run_search  # cma imports matplotlib
    from release.search.start import keep_start, one_at_a_time

    with _search_evaluation(config, pulled, search_r_mri(config, mri)) as (evaluation, live):
        s = config.search
        # The default breed spec stays out of the key, so checkpoints made before breeders existed still
        # resume. Nor is the number of workers in it: the result does not depend on it, so a resume may change it.
        key = fingerprint(genome=search_fingerprint(config, mri), fitness=fitness_key(config),
                          search=[s.popsize, s.sigma0, s.seed, live.device, live.dtype],
                          father=pulled.father.content, mother=pulled.mother.content,
                          **({"base": pulled.base.content} if pulled.base else {}),
                          **({} if config.breed == BreedSpec() else {"breed": config.breed.search_key()}))
        result = run_search(live.space, evaluation, config.search, config.run_dir / "breed", key, resume=resume,
                            progress=progress, callbacks=_search_callbacks(config, live, key, progress))
        estimator = None
        if hasattr(evaluation, "choose_child"):  # a cheap estimator ranked the candidates: full scoring picks
            result = evaluation.choose_child(result, config.run_dir / "breed" / "candidates.jsonl",
                                             config.fitness.elite)
            evaluation = evaluation.full_fitness  # and the transplant scores in full
        genome, tau, fitness, scores, start = result.genome, result.tau, result.fitness, result.scores, None
        if s.start_margin:  # the winner's curse guard: the start ships unless clearly beaten
            x0 = live.space.x0
            start = keep_start(result.genome, live.space.full(x0), one_at_a_time(evaluation), s.start_margin)
            if start["kept_start"] and "start_fitness" in start:
                genome, tau = start["genome"], live.space.tau(x0) if hasattr(live.space, "tau") else None
                fitness, scores = start["start_fitness"], start["start_scores"]
        # tau and r_MRI, and the transplant (which may change the genome that ships: "searched_genome" keeps
        # CMA-ES's); measured on the same live model(s) as the search
        extra = after_search(config, genome, tau, evaluation, mri, live.space.names)
        extra["searched_genome"] = list(result.genome)
        if live.fitness is not None and hasattr(live.fitness, "record"):
            estimator = live.fitness.record()
    bred = Bred(**extra, start=start and {k: v for k, v in start.items() if k != "start_scores"},
                fitness=fitness, scores=scores, generations=result.generations,
                evaluations=result.evaluations, seconds=result.seconds, stop_reason=result.stop_reason,
                searched_x=result.x, method=live.method, genes=live.space.names, live=dict(live.record),
                device=live.device.split(":")[0], dtype=live.dtype.removeprefix("torch."), estimator=estimator)
    return bred, [config.run_dir / "breed" / "best.json"]


def _search_callbacks(config: ReleaseConfig, live, key: str, progress: bool) -> tuple:
    lines = () if progress else (GenerationLines(config.search.max_generations),)  # the bar's stand-in
    if not config.search.track:
        return lines
    from release.search.tracking import TrackioTracker  # trackio, optional

    return lines + (TrackioTracker(config.name, key, config.run_dir / "breed", config.search.popsize, live.space.names,
                           config.genome.frozen, config.genome.r_max,
                           config={"search": config.search.model_dump(), "genome": config.genome.model_dump(mode="json"),
                                   "fitness": config.fitness.model_dump(mode="json")},
                           space=config.search.track_space, private=config.hub.private),)


@contextmanager
def _search_evaluation(config: ReleaseConfig, pulled: Pulled, r_mri: list[float] | None = None):
    """(evaluation, live model facts): in this process, or Ray workers when the config asks for them.
    The search side reads the parents in their run-folder JSON form (what a Ray worker is sent)."""
    from release.search.fitness import build_live_search  # imports lm_eval and torch

    if config.search.workers == 1 and config.search.ray_address is None:
        live = build_live_search(config, pulled.to_json(), r_mri)
        yield live.fitness, live
        return
    from release.search.distributed import ray_workers  # ray, optional

    with ray_workers(config, pulled.to_json(), r_mri) as pool:
        yield pool, pool.live


def stage_emit(config: ReleaseConfig, pulled: Pulled, bred: Bred, progress: bool,
               mri: Diagnosis | None = None) -> tuple[Emitted, list[Path]]:
    from release.breeders import get_breeder  # imports torch

    breeder = get_breeder(config.breed.method)
    s, f = config.search, config.fitness
    # No wall time here: the same genome bred again must give a byte-identical child and card (no new
    # commit); release.json keeps the time.
    search = {
        "popsize": s.popsize, "sigma0": s.sigma0, "seed": s.seed, "generations": bred.generations,
        "evaluations": bred.evaluations, "best_fitness": bred.fitness,
        "stop_reason": bred.stop_reason, "device": bred.device, "dtype": bred.dtype,
        "fitness": {"kind": f.kind, "tasks": {t.name: t.weight for t in f.tasks},
                    "search_items": {t.name: t.search_size for t in f.tasks}, "scorer": f.scorer},
    }
    if bred.searched_x is not None:  # CMA-ES's raw point: with r_MRI and tau, what the searched ratios came from
        search["x"] = bred.searched_x
    if f.kind == "calibration":  # the tasks (if any) are only reported: the search optimised the text
        search["fitness"] = {"kind": f.kind, "tasks": {}, "search_items": {},
                             "calibration": _calibration_facts(config, pulled)}
    if bred.estimator:  # what the card says of a cheap estimator (absent with full scoring, as before)
        search["fitness"]["estimator"] = bred.estimator
    # Breeders read the records in their run-folder JSON form: a breeder does not depend on the pipeline's types.
    bred_json, pulled_json = bred.to_json(), pulled.to_json()
    ratios = breeder.ratios(breeder.named_genome(bred_json), breeder.ratio_hooks(config, bred.r_mri))
    genome = (breeder.genome_record(config, bred_json, pulled_json, search, ratios)
              | genome_mri_record(bred_json, mri and mri.to_json()))
    # What `darwin-release reproduce` rebuilds the child with: the breeder and the library versions.
    genome = {"method": config.breed.method, **genome, "tool": {**genome["tool"], **library_versions()}}
    out = config.run_dir / "child"
    base = {"base_dir": Path(pulled.base.path)} if pulled.base else {}  # only the weight merges take a base
    breeder.emit(Path(pulled.father.path), Path(pulled.mother.path), genome, out,
                 max_shard_size=config.child.max_shard_size, progress=progress, **base)
    return Emitted(path=str(out), digest=folder_digest(out), genome=genome), [out]


def _held_out_text(config: ReleaseConfig) -> bool:
    """A calibration search with its own text keeps a share of it for the final evaluation (the built-in
    text is a few sentences: nothing is held out of it)."""
    f = config.fitness
    return f.kind == "calibration" and f.calibration_text is not None and f.calibration.heldout > 0


def _calibration_facts(config: ReleaseConfig, pulled: Pulled) -> dict:
    """What a calibration search optimised (mode, chunk length, tokens per split), for the genome and card."""
    from transformers import AutoTokenizer

    from release.evals.calibration import CalibrationSet  # imports torch

    tokenizer = AutoTokenizer.from_pretrained(pulled.father.path)  # the live model's (and child's) tokenizer
    facts = CalibrationSet.from_spec(config.fitness, tokenizer, config.search.seed).describe()
    return facts | {"source": config.fitness.calibration_text.name if config.fitness.calibration_text
                    else facts["source"]}  # a file name: the card never shows a local path


def stage_evaluate(config: ReleaseConfig, pulled: Pulled, child: Emitted,
                   progress: bool) -> tuple[Evaluated, list[Path]]:
    from release.breeders import get_breeder  # imports torch
    from release.search.fitness import evaluate_release  # imports lm_eval

    out = config.run_dir / "eval" / "results.json"
    results = evaluate_release(config, pulled.to_json(), Path(child.path), out, progress=progress,
                               child_trust_remote_code=get_breeder(config.breed.method).trust_remote_code)
    return Evaluated(path=str(out), results=results), [out]


def stage_card(config: ReleaseConfig, child: Emitted, evaluated: Evaluated | None,
               health: Health | None = None, emitted: dict | None = None, father_tag: str | None = None,
               father_dir: Path | None = None) -> tuple[Carded, list[Path]]:
    """Render README.md and its charts into the child folder; the outputs (what card vouches for) are the
    files there that emit (`emitted`: emit's manifest) did not write. `father_tag`: the pipeline_tag of the
    father's card, the child's when it is of his class."""
    from release.breeders import get_breeder  # imports torch
    from release.card.model_card import child_pipeline_tag  # imports huggingface_hub: only after open_hub
    from release.evals.final import copy_eval_results  # imports torch

    folder = Path(child.path)
    results = evaluated.results if evaluated else None
    # lm-eval's results files of the final evaluation travel with the child (eval_results/); none without one.
    copy_eval_results(Path(evaluated.path) if evaluated else None, folder)
    report = json.loads(Path(health.path).read_text()) if health else None
    tag = child_pipeline_tag(father_tag, father_dir, folder) if father_dir else "text-generation"
    get_breeder(config.breed.method).render_card(config, child.genome, results,
                                                 config.run_dir / "breed" / "candidates.jsonl", folder, health=report,
                                                 pipeline_tag=tag)
    written = [p for p in sorted(folder.rglob("*")) if p.is_file() and str(p) not in (emitted or {})]
    return Carded(readme=str(folder / "README.md")), [folder / "README.md", *written]


def stage_push(config: ReleaseConfig, session: HubSession, child: Emitted,
               force: bool = False) -> tuple[Pushed, list[Path]]:
    # huggingface_hub reads HF_ENDPOINT when first imported: only after open_hub has set it
    from release.hub.safe_push import push_release

    message = config.child.commit_message or f"Release {config.name}: child of {config.father.repo} x {config.mother.repo}"
    pushed = push_release(session.hub, child.path, config.child.repo, config.child.on_existing,
                          config.father.repo, config.mother.repo, message, private=config.hub.private,
                          force=force)
    return Pushed.from_json(pushed), []


def stage_space(config: ReleaseConfig, session: HubSession, pushed: Pushed) -> tuple[Deployed, list[Path]]:
    from release.hub.safe_push import check_space_target  # huggingface_hub: only after open_hub (HF_ENDPOINT)

    secrets = space_secrets(config)  # first: a missing one fails before anything is deployed
    check_space_target(session.hub, config.space.repo, config.child.repo, config.space.on_existing)
    folder = prepare_space_folder(config, config.run_dir / "space")
    variables = space_variables(config, pushed.revision)
    sha = session.hub.deploy_space(config.space.repo, folder, variables=variables, secrets=secrets,
                                   hardware=config.space.hardware, private=config.hub.private)
    # Only the secrets' names are recorded: their values stay in the environment.
    return Deployed(repo=config.space.repo, revision=sha, variables=variables, secrets=sorted(secrets)), [folder]


def stage_verify(config: ReleaseConfig, session: HubSession, child: Emitted,
                 pushed: Pushed) -> tuple[Verified, list[Path]]:
    from release.breeders import get_breeder  # imports torch
    from release.device import pick_device, pick_dtype  # imports torch

    device = pick_device(config.search.device)
    result = verify_child(config.child.repo, pushed.revision, Path(child.path), device=device,
                          dtype=pick_dtype(config.search.dtype, device), hub=session.hub,
                          trust_remote_code=get_breeder(config.breed.method).trust_remote_code)
    return Verified.from_json(result), []


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    force: set[str] = field(default_factory=set)
    dry_run: bool = False
    resume: bool = True
    progress: bool = True
    only: tuple[str, ...] = STAGES  # run these stages (and skip-check the ones they depend on)


def run_release(config: ReleaseConfig, opts: RunOptions) -> dict:
    """Run the stages in order; returns the release summary (also written to release.json)."""
    unknown = set(opts.force) - set(STAGES) - {"all"}
    if unknown:
        raise ReleaseError(f"--force {sorted(unknown)[0]}: not a stage; stages are {', '.join(STAGES)}")
    force = set(STAGES) if "all" in opts.force else opts.force
    config.run_dir.mkdir(parents=True, exist_ok=True)
    with hold_run_lock(config.run_dir):  # a second run at once would redo and duplicate this one's work
        for orphan in remove_orphans(config.run_dir):  # left by a run killed mid-write
            log.info("removed %s, left by an interrupted run", orphan)
        return _run_stages(config, opts, force)


def _run_stages(config: ReleaseConfig, opts: RunOptions, force: set[str]) -> dict:
    started = time.monotonic()
    book = StageBook(config.run_dir, force,
                     announce=lambda stage, done: stage_line(stage, "up to date" if done else STAGE_HELP[stage]))
    wanted = set(opts.only)
    last = max(STAGES.index(s) for s in wanted)
    needed = STAGES[: last + 1]  # a stage needs the results of those before it

    with open_hub(config) as session:
        preflight(config, session, pushes=not opts.dry_run and "push" in needed)  # before any download
        endpoint = session.endpoint
        pulled = book.run("pull", [config.father, config.mother, endpoint] + ([config.base] if config.base else []),
                          lambda: stage_pull(config, session, opts.dry_run, rehash="pull" in force),
                          still_valid=lambda r: all(session.resolves(p.repo, p.revision, p.revision)
                                                    for p in r.models()), record=Pulled)
        if "pull" not in book.ran:
            for note in moved_on(config, session, pulled):
                print(f"note: {note}")
        if "mri" not in needed:
            return {"ran": book.ran, "pull": pulled.to_json(), "fetched": pulled.fetched()}
        # The search depends on the parents' content; the child also records which commits they came from.
        # Neither depends on where the cache keeps them.
        contents = {"father": pulled.father.content, "mother": pulled.mother.content}
        parents = {"father": pulled.father.revision, "mother": pulled.mother.revision}
        if pulled.base:  # only then: runs without a base keep their stage keys
            contents["base"], parents["base"] = pulled.base.content, pulled.base.revision
        s, g = config.search, config.genome
        # The MRI scan reads a cross-architecture hybrid's FFN branches: ffn_blend only (the health check
        # runs for every breeder).
        darwin = config.breed.method == "ffn_blend"
        mri = None
        if darwin or g.mri:  # a weight merge scans its parents only when the search reads r_MRI
            mri = book.run("mri", [contents, g.layer_map, g.frozen, g.transplant, config.mri, s.seed, s.device,
                                   s.dtype], lambda: stage_mri(config, pulled), record=Diagnosis)
        else:
            stage_line("mri", "not needed (a weight merge without genome.mri)")
        if "breed" not in needed:
            return {"ran": book.ran, "mri": mri and mri.to_json(), "fetched": pulled.fetched()}
        # Without genome.mri the search does not read the diagnosis: its key (and result) stay as before.
        bred = book.run("breed", [contents, config.breed, config.genome, config.search, fitness_key(config)]
                        + ([mri.r_mri] if g.mri else []),
                        lambda: stage_breed(config, pulled, opts.resume and "breed" not in force,
                                            opts.progress, mri), record=Bred)
        if "emit" not in needed:
            return {"ran": book.ran, "breed": bred.to_json(), "fetched": pulled.fetched()}
        diagnosis = mri and mri.without_time()  # what the child records
        child = book.run("emit", [parents, bred.to_json(), config.breed, config.genome, config.child.max_shard_size,
                                  config.search, diagnosis, fitness_key(config)],
                         lambda: stage_emit(config, pulled, bred, opts.progress, mri), record=Emitted)
        health = None
        if "health" in needed and config.health.enabled:
            health = book.run("health", [contents, child.digest, config.health, config.mri, s.seed, s.device,
                                         s.dtype, config.fitness.calibration_text],
                              lambda: stage_health(config, pulled, child), record=Health)
        elif "health" in needed:
            stage_line("health", "off (health.enabled: false)")
        evaluated = None
        if "evaluate" in needed and (config.fitness.tasks or _held_out_text(config)):
            evaluated = book.run("evaluate", [parents, child.digest, config.fitness],
                                 lambda: stage_evaluate(config, pulled, child, opts.progress), record=Evaluated)
        elif "evaluate" in needed:
            stage_line("evaluate", "nothing to score (fitness.tasks is empty)")
        if "card" in needed:
            book.run("card", [child.digest, evaluated and evaluated.results, config.card, config.child.repo,
                              config.name, _templates_digest(), health and health.to_json()],
                     lambda: stage_card(config, child, evaluated, health, book.files("emit"),
                                        _card_tag(session, pulled), Path(pulled.father.path)), record=Carded)
        if opts.dry_run:
            for stage in HUB_STAGES:
                if stage in needed:
                    stage_line(stage, "skipped (--dry-run)")
        if opts.dry_run or "push" not in needed:
            return {"ran": book.ran, "dry_run": opts.dry_run, "child_folder": child.path,
                    "fetched": pulled.fetched(),
                    "skipped": [s for s in HUB_STAGES if s in needed and (s != "space" or config.space)],
                    "health": health and health.to_json()}
        check_before_push(config, health, force)  # a failed health check stops the release here
        pushed = book.run("push", [_child_content(book, Path(child.path)), config.child.repo, endpoint,
                                   config.hub.private, config.child.on_existing],
                          lambda: stage_push(config, session, child, force="push" in force),
                          still_valid=lambda r: session.resolves(r.repo, r.ref, r.revision), record=Pushed)
        spaced = None
        if config.space and "space" in needed:
            spaced = book.run("space", [pushed.to_json(), config.space, config.card, _space_digest(), endpoint],
                              lambda: stage_space(config, session, pushed),
                              still_valid=lambda r: session.resolves(r.repo, "main", r.revision, "space"),
                              record=Deployed)
        elif "space" in needed:
            stage_line("space", "no space in the config")
        verified = None
        if "verify" in needed:
            verified = book.run("verify", [pushed.to_json(), child.digest],
                                lambda: stage_verify(config, session, child, pushed), record=Verified)
        summary = release_summary(config, endpoint, pulled, bred, child, evaluated, pushed, spaced, verified,
                                  time.monotonic() - started, book.ran)
        summary.update(mri_summary(bred, child, health))
        write_json(config.run_dir / "release.json", summary)
    return summary


def preflight(config: ReleaseConfig, session: HubSession, pushes: bool) -> None:
    """What the Hub would refuse only at push or deploy, hours later: one-line errors now."""
    check_values(config)
    if pushes:
        log.info(check_write_access(config, session.hub))


def _child_content(book: StageBook, folder: Path) -> str:
    """The child folder's content key for push, once it is known to hold exactly what emit and card wrote
    (their bytes were checked when those stages were skipped): one line and nothing pushed otherwise."""
    if not book.files("emit"):  # a run folder from before manifests: its bytes are trusted, as then
        return folder_digest(folder)
    return digest(vouched_folder(folder, [book.files("emit"), book.files("card")], "emit or card"))


def release_summary(config: ReleaseConfig, endpoint: str, pulled: Pulled, bred: Bred, child: Emitted,
                    evaluated: Evaluated | None, pushed: Pushed, spaced: Deployed | None, verified: Verified | None,
                    seconds: float, ran: list[str]) -> dict:
    """release.json: its keys are public (add, don't rename)."""
    from release.breeders import get_breeder  # imports torch

    scores, stderrs, vigor, heldout = {}, {}, None, None
    if evaluated:
        from release.card.model_card import hybrid_vigor  # imports huggingface_hub, which must follow open_hub

        models = evaluated.results["models"]
        for role, m in models.items():
            scores[role] = {task: s["value"] for task, s in m["scores"].items()}
            stderrs[role] = {task: s["stderr"] for task, s in m["scores"].items()}
            if "fitness" in m:  # none when only the calibration text was scored
                scores[role]["fitness"], stderrs[role]["fitness"] = m["fitness"]["value"], m["fitness"]["stderr"]
            if m.get("calibration"):
                scores[role]["calibration_ll"] = m["calibration"]["value"]
                stderrs[role]["calibration_ll"] = m["calibration"]["stderr"]
        if all("fitness" in models[role] for role in ("child", "father", "mother")):
            verdict = hybrid_vigor(*(SimpleNamespace(**models[role]["fitness"])
                                     for role in ("child", "father", "mother")))
            vigor = {"claimed": verdict["claimed"], "reason": verdict["reason"]}
        heldout = sum(t["n"] for t in evaluated.results["tasks"].values())
    return {
        "name": config.name,
        "endpoint": endpoint,
        "child_repo": pushed.repo,
        "child_revision": pushed.revision,
        "child_push": {"target": pushed.target, "ref": pushed.ref, "pr_url": pushed.pr_url,
                       "committed": pushed.committed},
        "space_repo": spaced and spaced.repo,
        "space_revision": spaced and spaced.revision,
        "father": {"repo": pulled.father.repo, "revision": pulled.father.revision},
        "mother": {"repo": pulled.mother.repo, "revision": pulled.mother.revision},
        **({"base": {"repo": pulled.base.repo, "revision": pulled.base.revision}} if pulled.base else {}),
        "fetched": pulled.fetched(),
        "genome": bred.genome,
        "method": config.breed.method,
        "trust_remote_code": get_breeder(config.breed.method).trust_remote_code,  # False: a stock child
        "layer_map": bred.live.get("layer_map"),  # ffn_blend only
        "frozen": config.genome.frozen,
        "mixing_rule": child.genome.get("mixing_rule", config.breed.method),
        "search": {"fitness": bred.fitness, "scores": bred.scores, "generations": bred.generations,
                   "evaluations": bred.evaluations, "seconds": bred.seconds, "stop_reason": bred.stop_reason,
                   **({"estimator": bred.estimator} if bred.estimator else {}),
                   **({"start": {k: bred.start.get(k) for k in ("kept_start", "reason")}} if bred.start else {})},
        "scores": scores,
        "stderr": stderrs,  # the scores' standard errors, on `heldout_items` items the search never saw
        "heldout_items": heldout,
        "vigor": vigor,  # the card's hybrid-vigor rule: {"claimed": bool, "reason": why not}
        "local_root": str(config.hub.local_root) if config.hub.endpoint == "local" else None,
        "verify": verified and verified.to_json(),
        "stages_run": ran,
        "wall_seconds": round(seconds, 2),
    }


def _card_tag(session: HubSession, pulled: Pulled) -> str | None:
    """The pipeline_tag of the father's card at the pulled commit (None: no card, or none in it)."""
    father = session.hub.card_data(pulled.father.repo, pulled.father.revision) or {}
    tag = father.get("pipeline_tag")
    return tag if isinstance(tag, str) else None


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _templates_digest() -> str:
    return folder_digest(_repo_root() / "cards")


def _space_digest() -> str:
    return digest([folder_digest(_repo_root() / "space"), _templates_digest()])
