"""The task suite of a run: lm-eval tasks built once, and the fixed search / held-out item subsets.

`TaskSuite.from_spec` builds one narrow TaskManager, loads the task objects once, draws the subsets
once and persists them (subsets.json in the work folder) so the card and resume logic can record and
verify exactly which items the search saw. Evaluators reuse the suite for every candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from datasets import config as datasets_config
from lm_eval.tasks import TaskManager

from release.config import FitnessSpec
from release.errors import ReleaseError
from release.evals import synthetic
from release.evals.benchmarks import ALIASES, Benchmark, alias_override, data_override, describe, hub_dataset
from release.evals.names import ZOO_TASKS, lm_eval_tasks_dir, resolve
from release.evals.subsets import split_items
from release.run.files import write_json, write_yaml

log = logging.getLogger(__name__)

SPLITS = ("search", "heldout")
SUBSETS_FILE = "subsets.json"
MIN_SYNTHETIC_ITEMS = 120


@dataclass
class SuiteTask:
    """One benchmark of the fitness: its lm-eval leaf tasks and the items of each split."""

    bench: Benchmark
    weight: float
    leaves: dict[str, object]  # leaf task name -> lm-eval Task
    weight_by_size: bool  # how lm-eval's group config aggregates the leaves
    items: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # split -> leaf -> doc indices
    group: object | None = None  # the lm-eval Group when the benchmark is one

    @property
    def name(self) -> str:
        return self.bench.name

    def n(self, split: str) -> int:
        return sum(len(v) for v in self.items[split].values())


class TaskSuite:
    def __init__(self, tasks: list[SuiteTask], seed: int, workdir: Path):
        self.tasks = tasks
        self.seed = seed
        self.workdir = workdir

    @classmethod
    def from_spec(cls, spec: FitnessSpec, workdir: str | Path, seed: int) -> TaskSuite:
        if not spec.tasks:  # any kind: a calibration search may report benchmark tasks on held-out items
            raise ReleaseError("a task suite needs fitness.tasks: list at least one task")
        workdir = Path(workdir)
        generated = workdir / "tasks"
        targets, fixed = {}, []
        for t in spec.tasks:
            alias = ALIASES.get(t.name)
            targets[t.name] = alias.target if alias else t.name
            if alias and alias.folder:
                fixed.append(lm_eval_tasks_dir().joinpath(*alias.folder))
            elif alias:  # synthetic: records and YAML written now, sized to fit what the config asks for
                items = max(MIN_SYNTHETIC_ITEMS, t.search_size + (t.heldout_size or 40))
                synthetic.write_synthetic_task(generated, workdir / "data", items, seed)
        known = [*spec.include_path, ZOO_TASKS, generated]
        manager = resolve(list(targets.values()), known, fixed)
        load = [_load_spec(t, targets[t.name], manager, spec.data_dir) for t in spec.tasks]
        wrappers = [w for w in load if isinstance(w, dict)]
        for wrapper in wrappers:  # as YAML files: lm-eval 0.4.13 cannot load a group given as a dict
            write_yaml(generated / f"{wrapper['group']}.yaml", wrapper)
        if wrappers:
            manager = TaskManager(include_path=list(dict.fromkeys([*manager.include_path, str(generated)])),
                                  include_defaults=False)
        load = [w["group"] if isinstance(w, dict) else w for w in load]
        _check_offline(spec, targets, manager)
        loaded = {"tasks": {}, "groups": {}}
        for t, what in zip(spec.tasks, load, strict=True):  # one at a time: a failure names its task
            try:
                one = manager.load([what])
            except Exception as e:  # lm-eval / datasets raise many types; the user needs one line
                raise ReleaseError(_load_failure(t, what, targets[t.name], manager, spec.data_dir, e)) from None
            loaded["tasks"].update(one["tasks"])
            loaded["groups"].update(one.get("groups", {}))
        tasks = []
        for t in spec.tasks:
            task = _suite_task(t, targets[t.name], loaded, spec, manager)
            sizes = {leaf: len(obj.eval_docs) for leaf, obj in task.leaves.items()}
            search, heldout = split_items(t.name, sizes, t.search_size, t.heldout_size, seed)
            task.items = {"search": search, "heldout": heldout}
            _fewshot_outside_heldout(task)
            tasks.append(task)
        suite = cls(tasks, seed, workdir)
        write_json(workdir / SUBSETS_FILE, suite.describe())
        log.info("task suite: %s", ", ".join(f"{t.name} (search {t.n('search')}, held-out {t.n('heldout')})"
                                             for t in tasks))
        return suite

    def reseed_fewshot(self) -> None:
        """Few-shot examples drawn the same way for every evaluation (a task's sampler advances its own
        generator on every draw: without this, each candidate would be scored with other examples)."""
        for t in self.tasks:
            for leaf in t.leaves.values():
                leaf.set_fewshot_seed(seed=self.seed)

    # ---- what evaluators and the card read ----

    def samples(self, split: str) -> dict[str, list[int]]:
        """lm-eval `samples=`: leaf task -> doc indices, sorted (lm-eval maps results back to indices in
        eval_docs order), leaves without items left out (lm-eval would run those in full)."""
        check_split(split)
        return {leaf: idx for t in self.tasks for leaf, idx in t.items[split].items() if idx}

    def task_dict(self, split: str, groups: bool = False) -> dict:
        """The leaf tasks holding items of `split`, in lm-eval's TaskDict form.

        Groups are left out by default: the evaluator aggregates their leaves itself, with the group's own
        rule, so that a leaf without items in this split needs no special case. `groups=True` adds the
        groups whose every leaf holds items (the final evaluation: lm-eval's results then have their rows).
        """
        wanted = self.samples(split)
        out = {"tasks": {leaf: obj for t in self.tasks for leaf, obj in t.leaves.items() if leaf in wanted}}
        found = {}
        for t in self.tasks:
            if groups and t.group is not None and all(leaf in wanted for leaf in t.leaves):
                found |= {g.name: g for g in [t.group, *t.group.get_all_groups()]}
        if found:
            out |= {"groups": found, "group_map": {g.name: g.child_names for g in found.values()}}
        return out

    @property
    def search_items(self) -> dict[str, int]:
        return {t.name: t.n("search") for t in self.tasks}

    def describe(self) -> dict:
        """subsets.json: every chosen index, with a hash of the chosen records to detect changed data."""
        tasks = {}
        for t in self.tasks:
            entry = {"target": t.bench.target, "metric": t.bench.metric, "dataset": t.bench.dataset,
                     "weight": t.weight, "n_items": sum(len(o.eval_docs) for o in t.leaves.values())}
            if t.bench.filter != "none" or t.bench.num_fewshot or t.bench.output_types != ("multiple_choice",):
                entry |= {"filter": t.bench.filter, "num_fewshot": t.bench.num_fewshot,
                          "output_types": list(t.bench.output_types)}
            for split in SPLITS:
                entry[split] = {"n": t.n(split), "docs_sha256": _docs_hash(t, split), "indices": t.items[split]}
            tasks[t.name] = entry
        body = {"seed": self.seed, "tasks": tasks}
        return {"fingerprint": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), **body}

    @property
    def fingerprint(self) -> str:
        return self.describe()["fingerprint"]


def _fewshot_outside_heldout(task: SuiteTask) -> None:
    """A task without a training, validation or few-shot split draws its few-shot examples from its
    evaluation docs, held-out items included: the search would then see held-out items (with their answers)
    in its prompts. Its sampler's pool becomes the evaluation docs minus the held-out items."""
    for leaf, obj in task.leaves.items():
        sampler = getattr(obj, "sampler", None)
        if (not obj.get_config("num_fewshot") or sampler is None or sampler.fewshot_indices
                or not task.items["heldout"].get(leaf)):
            continue
        docs = list(obj.eval_docs)
        if list(obj.fewshot_docs()) != docs:
            continue  # examples from another split: never an evaluated item
        heldout = set(task.items["heldout"][leaf])
        sampler.df = [doc for i, doc in enumerate(docs) if i not in heldout]  # the pool it samples from
        log.info("%s: few-shot examples drawn from its evaluation split, held-out items left out", leaf)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ReleaseError(f"unknown evaluation split {split!r}: use one of {', '.join(SPLITS)}")


def _load_spec(t, target: str, manager, data_dir: Path | None):
    """What TaskManager.load gets for one configured task: its name, or a wrapper group over local records."""
    alias = ALIASES.get(t.name)
    if t.data_files is not None:
        entry = manager.task_index[target]
        is_group = entry.cfg is not None and "group" in entry.cfg
        if entry.cfg is None:
            raise ReleaseError(f"fitness.tasks {t.name}: {target} is an lm-eval tag; data_files needs a task or group")
        return data_override(t.name, target, entry.cfg, is_group, t.data_files)
    if alias and alias.files and data_dir is not None:
        return alias_override(t.name, alias, Path(data_dir))
    return target


def _leaf_configs(target: str, manager) -> list[dict]:
    """The index configs of the leaf tasks `target` names (before any data override), recursively."""
    index, out, todo, seen = manager.task_index, [], [target], set()
    while todo:
        name = todo.pop()
        entry = index.get(name)
        if name in seen or entry is None:
            continue
        seen.add(name)
        if entry.cfg is None:
            todo += sorted(entry.tags)
        elif "group" in entry.cfg:
            todo += [m if isinstance(m, str) else (m.get("task") or m.get("group"))
                     for m in entry.cfg.get("task") or [] if isinstance(m, (str, dict))]
        else:
            out.append(entry.cfg)
    return out


def _check_offline(spec: FitnessSpec, targets: dict[str, str], manager) -> None:
    """Before anything is downloaded: every Hub dataset the tasks read must be in the local datasets cache
    when the machine is offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE), else one line naming it."""
    offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
                  for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    for t in spec.tasks:
        if t.data_files is not None or (t.name in ALIASES and (spec.data_dir or not ALIASES[t.name].folder)):
            continue
        for cfg in _leaf_configs(targets[t.name], manager):
            dataset = hub_dataset(cfg.get("dataset_path"))
            if dataset and offline and not _cached(dataset):
                raise ReleaseError(f"fitness.tasks {t.name}: dataset {dataset} is not available offline (not in "
                                   "the datasets cache): give the task local records with data_files "
                                   "(or fitness.data_dir for click/musr), or run where the Hub is reachable")


def _load_failure(t, what, target: str, manager, data_dir, error: Exception) -> str:
    first = (str(error).strip().splitlines() or [""])[0][:200]
    if what.startswith("darwin_local_"):  # local records
        where = f"data_dir {data_dir}" if t.data_files is None else "its data_files"
        return f"fitness.tasks {t.name}: lm-eval could not load it from {where}: {type(error).__name__}: {first}"
    datasets = sorted({d for cfg in _leaf_configs(target, manager) if (d := hub_dataset(cfg.get("dataset_path")))})
    if datasets:
        fix = "data_files" if t.name not in ALIASES else "fitness.data_dir"
        return (f"fitness.tasks {t.name}: dataset {', '.join(datasets)} is not available (offline, or not on the "
                f"Hub): {type(error).__name__}: {first}; give local records with {fix}")
    return f"fitness.tasks {t.name}: lm-eval could not load {target}: {type(error).__name__}: {first}"


def _cached(dataset: str) -> bool:
    folder = dataset.replace("/", "___")
    roots = [Path(datasets_config.HF_DATASETS_CACHE), Path(datasets_config.HF_CACHE_HOME) / "hub"]
    return any((r / folder).exists() or (r / f"datasets--{dataset.replace('/', '--')}").exists() for r in roots)


def _suite_task(t, target: str, loaded: dict, spec: FitnessSpec, manager) -> SuiteTask:
    group = loaded.get("groups", {}).get(target)
    if group is None and target not in loaded["tasks"]:  # a tag: every task it names
        names = sorted(manager.task_index[target].tags) if target in manager.task_index else []
        leaves = {n: loaded["tasks"][n] for n in names if n in loaded["tasks"]}
    else:
        leaves = {target: loaded["tasks"][target]} if group is None else {x.task_name: x for x in group.get_all_tasks()}
    if not leaves:
        raise ReleaseError(f"fitness.tasks {t.name}: lm-eval loaded no task for {target}")
    for leaf in leaves.values():
        if t.num_fewshot is not None:
            leaf.set_config(key="num_fewshot", value=t.num_fewshot)
        elif leaf.get_config("num_fewshot") is None:
            leaf.set_config(key="num_fewshot", value=0)  # as lm-eval's simple_evaluate does
        if spec.max_gen_toks is not None and leaf.config.output_type == "generate_until":
            leaf.config.generation_kwargs = {**(leaf.config.generation_kwargs or {}), "max_gen_toks": spec.max_gen_toks}
    alias = ALIASES.get(t.name)
    original = (_leaf_configs(target, manager) or [{}])[0]  # the task's own YAML, before any data override
    dataset = alias.dataset if alias else hub_dataset(original.get("dataset_path"))
    bench = describe(t.name, target, leaves, group, t.metric, dataset, original.get("dataset_name"))
    by_size = True
    if group is not None:
        rules = [a.weight_by_size for a in group.aggregate_metric_list or [] if a.metric == bench.metric]
        if group.aggregate_metric_list and not rules:
            raise ReleaseError(f"fitness.tasks {t.name}: lm-eval group {target} does not aggregate {bench.metric}: "
                               "set metric to one it aggregates")
        by_size = rules[0] if rules else True
    return SuiteTask(bench, t.weight, leaves, by_size, group=group)


def _docs_hash(task: SuiteTask, split: str) -> str:
    h = hashlib.sha256()
    for leaf, idx in sorted(task.items[split].items()):
        docs = task.leaves[leaf].eval_docs
        for i in idx:
            h.update(json.dumps([leaf, i, docs[i]], sort_keys=True, default=str, ensure_ascii=False).encode())
    return h.hexdigest()
