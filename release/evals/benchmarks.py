"""The benchmarks of a fitness: any lm-eval task, group or tag, and how lm-eval is told to load them.

A config names lm-eval tasks as `lm_eval --tasks` does. Three names are aliases kept from the first
release: `click` and `musr` are lm-eval's registered groups `click` and `leaderboard_musr` (their folders
are known, so no lookup is needed), `synthetic` is the project's own offline task (see synthetic.py).
The `zoo_*` tasks (the trained tiny zoo's skills, release/zoo/tasks/, shipped with their records) are
ordinary lm-eval tasks in a folder the name lookup always knows (names.py).

Local records (`fitness.data_dir` for click/musr, `data_files` for any task) go through a small wrapper
group that names the registered task or group and only overrides where the records come from
(`dataset_path: json|csv|parquet` + `dataset_kwargs.data_files`), so lm-eval's own prompts, choices,
process_docs, filters and metrics still apply. What the scores mean (metric, filter, output type, dataset
id, config, split, few-shot) is read from the loaded lm-eval task objects (`describe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lm_eval.api.metrics import mean

from release.errors import ReleaseError
from release.evals import synthetic

# Files expected under fitness.data_dir (the layout of ../shared/data), per lm-eval split name.
CLICK_FILES = {"train": "click/click.jsonl"}
MUSR_FILES = {"murder_mysteries": "musr/murder_mystery.csv",
              "object_placements": "musr/object_placements.csv",
              "team_allocation": "musr/team_allocation.csv"}
# `datasets` builders for local record files, by suffix.
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas"}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@dataclass(frozen=True)
class Alias:
    target: str  # lm-eval group or task
    folder: tuple[str, ...] | None  # under lm-eval's tasks folder (None: generated at run time)
    dataset: str | None  # Hub dataset id of the records (None: none exists)
    dataset_path: str | None = None  # `datasets` builder for the data_dir files
    files: dict[str, str] | None = None  # split -> path under data_dir
    dataset_kwargs: dict | None = None  # extra builder options for local files


ALIASES = {
    "click": Alias("click", ("click",), "EunsuKim/CLIcK", dataset_path="json", files=CLICK_FILES),
    # keep_default_na=False: pandas would otherwise read answers such as "None" or "NA" as missing.
    "musr": Alias("leaderboard_musr", ("leaderboard", "musr"), "TAUR-Lab/MuSR", dataset_path="csv",
                  files=MUSR_FILES, dataset_kwargs={"keep_default_na": False}),
    "synthetic": Alias(synthetic.TASK_NAME, None, None),  # generated records: no Hub dataset to name
}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the fitness, as lm-eval defines it."""

    name: str  # the config's task name
    target: str  # lm-eval group, task or tag whose metric is the benchmark's score
    metric: str  # lm-eval metric name (acc, acc_norm, exact_match, bits_per_byte, ...)
    filter: str = "none"  # lm-eval filter whose responses are scored ("none" without filters)
    higher_is_better: bool = True
    mean: bool = True  # aggregated by the mean over items (per-item values, closed-form stderr)
    output_types: tuple[str, ...] = ("multiple_choice",)
    dataset: str | None = None  # Hub dataset id (None: local or generated records)
    dataset_config: str | None = None
    split: str | None = None
    num_fewshot: int = 0

    @property
    def key(self) -> str:
        """lm-eval's results key, e.g. "acc,none"."""
        return f"{self.metric},{self.filter}"


def builder_for(files: list[str], name: str) -> str:
    kinds = {BUILDERS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise ReleaseError(f"fitness.tasks {name}: data_files must all be .json/.jsonl, .csv or .parquet "
                           f"(one kind), got {', '.join(sorted(Path(f).name for f in files))}")
    return kinds.pop()


def _flat(files) -> list[str]:
    values = files.values() if isinstance(files, dict) else [files]
    return [f for v in values for f in ([v] if isinstance(v, str) else v)]


def data_override(name: str, target: str, entry_cfg: dict | None, is_group: bool, data_files) -> dict:
    """The wrapper group pointing lm-eval's `target` at the user's local record files."""
    builder = builder_for(_flat(data_files), name)
    absolute = (lambda v: str(Path(v).resolve()) if isinstance(v, str) else [str(Path(x).resolve()) for x in v])
    if isinstance(data_files, dict):
        files = {split: absolute(v) for split, v in data_files.items()}
    else:
        cfg = entry_cfg or {}
        split = cfg.get("test_split") or cfg.get("validation_split")
        if is_group or not split:
            raise ReleaseError(f"fitness.tasks {name}: give data_files as split -> file(s) (e.g. {{test: "
                               "records.jsonl}}): lm-eval's task does not name one evaluation split to fill")
        files = {split: absolute(data_files)}
    override = {"dataset_path": builder, "dataset_name": None, "dataset_kwargs": {"data_files": files}}
    if not is_group:  # splits the task names but the files do not hold: none (lm-eval then skips them)
        override |= {key: None for key in SPLIT_KEYS if (entry_cfg or {}).get(key) not in (None, *files)}
    return {"group": f"darwin_local_{name}", "task": [{("group" if is_group else "task"): target, **override}]}


def alias_override(name: str, alias: Alias, data_dir: Path) -> dict:
    """The wrapper group that points a click/musr alias at the records under fitness.data_dir."""
    files = {}
    for split, rel in alias.files.items():
        path = (data_dir / rel).resolve()
        if not path.is_file():
            raise ReleaseError(f"fitness.data_dir: {data_dir / rel} not found: {name} needs "
                               f"{', '.join(alias.files.values())} under data_dir (the layout of ../shared/data)")
        files[split] = str(path)
    override = {"group": alias.target, "dataset_path": alias.dataset_path,
                "dataset_kwargs": {"data_files": files, **(alias.dataset_kwargs or {})}}
    return {"group": f"darwin_local_{name}", "task": [override]}


def hub_dataset(path: str | None) -> str | None:
    """`path` when it is a Hub dataset id (owner/name), not a local builder or folder."""
    if not path or path in LOCAL_BUILDERS or Path(path).expanduser().exists():
        return None
    return path if "/" in path and not path.startswith((".", "/", "~")) else None


def describe(name: str, target: str, leaves: dict, group, metric: str | None, dataset: str | None,
             dataset_config: str | None) -> Benchmark:
    """What the score of `target` means, from lm-eval's loaded task objects (and the user's `metric`).

    `dataset`, `dataset_config`: the Hub dataset the task's own YAML names (local records given with
    data_files or data_dir stand in for it), None when it names none (local or generated records)."""
    first = next(iter(leaves.values()))
    if metric:
        metric_name, _, filt = metric.partition(",")
    elif group is not None and group.aggregate_metric_list:
        agg = group.aggregate_metric_list[0]
        metric_name, filt = agg.metric, (agg.filter_list or ["none"])[0]
    else:
        metric_name = next(iter(first.higher_is_better()), None)
        filt = ""
    filters = [f["name"] for f in first.config.filter_list or []] or ["none"]
    filt = filt or filters[0]
    for leaf_name, leaf in leaves.items():
        names = [f["name"] for f in leaf.config.filter_list or []] or ["none"]
        if metric_name not in leaf.higher_is_better() or filt not in names:
            known = [f"{m},{f}" for m in leaf.higher_is_better() for f in names]
            raise ReleaseError(f"fitness.tasks {name}: lm-eval task {leaf_name} has no metric {metric_name},{filt} "
                               f"(it reports {', '.join(known)}): set metric to one of them")
    cfg = first.config
    return Benchmark(
        name=name, target=target, metric=metric_name, filter=filt,
        higher_is_better=bool(first.higher_is_better()[metric_name]),
        mean=all(leaf.aggregation().get(metric_name) is mean for leaf in leaves.values()),
        output_types=tuple(sorted({leaf.config.output_type for leaf in leaves.values()})),
        dataset=dataset, dataset_config=dataset_config if dataset else None,
        split=cfg.test_split or cfg.validation_split,
        num_fewshot=int(cfg.num_fewshot or 0),
    )
