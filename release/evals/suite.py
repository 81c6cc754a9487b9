"""The task suite of a run: lm-eval tasks built once, and the fixed search / held-out item subsets.

`TaskSuite.from_spec` builds one narrow TaskManager, loads the task objects once, draws the subsets
once and persists them (subsets.json in the work folder) so the card and resume logic can record and
verify exactly which items the search saw. Evaluators reuse the suite for every candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from release.config import FitnessSpec
from release.errors import ReleaseError
from release.evals.benchmarks import BENCHMARKS, Benchmark, write_task_configs
from release.run.files import write_json
from release.evals.subsets import split_items

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
        from lm_eval.tasks import TaskManager

        if not spec.tasks:  # any kind: a calibration search may report benchmark tasks on held-out items
            raise ReleaseError("a task suite needs fitness.tasks: list at least one task")
        workdir = Path(workdir)
        names = [t.name for t in spec.tasks]
        synthetic_items = max([MIN_SYNTHETIC_ITEMS] + [t.search_size + (t.heldout_size or 40)
                                                       for t in spec.tasks if t.name == "synthetic"])
        load, dirs = write_task_configs(names, spec.data_dir, workdir / "tasks", synthetic_items, seed)
        manager = TaskManager(include_path=[str(d) for d in dirs], include_defaults=False)
        try:
            loaded = manager.load(load)
        except Exception as e:  # lm-eval / datasets raise many types; the user needs one line
            where = f"data_dir {spec.data_dir}" if spec.data_dir else "the Hub (set fitness.data_dir for offline runs)"
            raise ReleaseError(f"could not load tasks {names} from {where}: {type(e).__name__}: {e}") from None
        tasks = []
        for t in spec.tasks:
            bench = BENCHMARKS[t.name]
            leaves, by_size = _leaves(loaded, bench)
            task = SuiteTask(bench, t.weight, leaves, by_size)
            sizes = {leaf: len(obj.eval_docs) for leaf, obj in leaves.items()}
            search, heldout = split_items(t.name, sizes, t.search_size, t.heldout_size, seed)
            task.items = {"search": search, "heldout": heldout}
            tasks.append(task)
        suite = cls(tasks, seed, workdir)
        write_json(workdir / SUBSETS_FILE, suite.describe())
        log.info("task suite: %s", ", ".join(f"{t.name} (search {t.n('search')}, held-out {t.n('heldout')})"
                                             for t in tasks))
        return suite

    # ---- what evaluators and the card read ----

    def samples(self, split: str) -> dict[str, list[int]]:
        """lm-eval `samples=`: leaf task -> doc indices, sorted (lm-eval maps results back to indices in
        eval_docs order), leaves without items left out (lm-eval would run those in full)."""
        check_split(split)
        return {leaf: idx for t in self.tasks for leaf, idx in t.items[split].items() if idx}

    def task_dict(self, split: str) -> dict:
        """The leaf tasks holding items of `split`, in lm-eval's TaskDict form.

        Groups are left out: the evaluator aggregates their leaves itself, with the group's own rule, so
        that a leaf without items in this split needs no special case.
        """
        wanted = self.samples(split)
        return {"tasks": {leaf: obj for t in self.tasks for leaf, obj in t.leaves.items() if leaf in wanted}}

    @property
    def search_items(self) -> dict[str, int]:
        return {t.name: t.n("search") for t in self.tasks}

    def describe(self) -> dict:
        """subsets.json: every chosen index, with a hash of the chosen records to detect changed data."""
        tasks = {}
        for t in self.tasks:
            entry = {"target": t.bench.target, "metric": t.bench.metric, "dataset": t.bench.dataset,
                     "weight": t.weight, "n_items": sum(len(o.eval_docs) for o in t.leaves.values())}
            for split in SPLITS:
                entry[split] = {"n": t.n(split), "docs_sha256": _docs_hash(t, split), "indices": t.items[split]}
            tasks[t.name] = entry
        body = {"seed": self.seed, "tasks": tasks}
        return {"fingerprint": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), **body}

    @property
    def fingerprint(self) -> str:
        return self.describe()["fingerprint"]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ReleaseError(f"unknown evaluation split {split!r}: use one of {', '.join(SPLITS)}")


def _leaves(loaded: dict, bench: Benchmark) -> tuple[dict[str, object], bool]:
    """Leaf tasks of the benchmark's lm-eval group (or the task itself) and its weight_by_size setting."""
    group = loaded.get("groups", {}).get(bench.target)
    if group is None:
        return {bench.target: loaded["tasks"][bench.target]}, True
    by_size = [a.weight_by_size for a in group.aggregate_metric_list or [] if a.metric == bench.metric]
    if not by_size:
        raise ReleaseError(f"lm-eval group {bench.target} does not aggregate {bench.metric}: "
                           "this lm-eval version is not supported (pin lm-eval 0.4.13)")
    return {t.task_name: t for t in group.get_all_tasks()}, by_size[0]


def _docs_hash(task: SuiteTask, split: str) -> str:
    h = hashlib.sha256()
    for leaf, idx in sorted(task.items[split].items()):
        docs = task.leaves[leaf].eval_docs
        for i in idx:
            h.update(json.dumps([leaf, i, docs[i]], sort_keys=True, default=str, ensure_ascii=False).encode())
    return h.hexdigest()
