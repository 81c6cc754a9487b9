"""The benchmarks a release config can name, described as data, and how lm-eval is told to load them.

`click` and `musr` are lm-eval's own registered groups (`click`, `leaderboard_musr`): loaded by name they
download from the Hub, exactly as a user with internet runs them. With a `data_dir` a small wrapper group
YAML (written into the run folder) names the same registered group and only overrides where the records
come from (`dataset_path: json|csv` + `dataset_kwargs.data_files`), so lm-eval's own prompts, choices,
process_docs and metrics still apply. `synthetic` is the project's own task (see synthetic.py). The
`zoo_*` tasks are the trained tiny zoo's skills (release/zoo/tasks/, shipped with their records).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lm_eval.tasks

from release.errors import ReleaseError
from release.evals import synthetic
from release.run.files import write_yaml
from release.zoo import tasks as zoo_tasks

LM_EVAL_TASKS = Path(lm_eval.tasks.__file__).resolve().parent

# Files expected under fitness.data_dir (the layout of ../shared/data), per lm-eval split name.
CLICK_FILES = {"train": "click/click.jsonl"}
MUSR_FILES = {"murder_mysteries": "musr/murder_mystery.csv",
              "object_placements": "musr/object_placements.csv",
              "team_allocation": "musr/team_allocation.csv"}


@dataclass(frozen=True)
class Benchmark:
    name: str  # the config's task name
    target: str  # lm-eval group or task whose metric is the benchmark's score
    metric: str  # as lm-eval's task YAMLs define it
    dataset: str  # Hub dataset id, for the card
    task_dir: Path | None  # lm-eval folder with the YAMLs (None: generated at run time)
    dataset_path: str | None = None  # `datasets` builder for local files
    files: dict[str, str] | None = None  # split -> path under data_dir
    dataset_kwargs: dict | None = None  # extra builder options for local files


BENCHMARKS = {
    "click": Benchmark("click", "click", "acc", "EunsuKim/CLIcK", LM_EVAL_TASKS / "click",
                       dataset_path="json", files=CLICK_FILES),
    # keep_default_na=False: pandas would otherwise read answers such as "None" or "NA" as missing.
    "musr": Benchmark("musr", "leaderboard_musr", "acc_norm", "TAUR-Lab/MuSR", LM_EVAL_TASKS / "leaderboard" / "musr",
                      dataset_path="csv", files=MUSR_FILES, dataset_kwargs={"keep_default_na": False}),
    "synthetic": Benchmark("synthetic", synthetic.TASK_NAME, "acc", synthetic.DATASET_ID, None),
    **{name: Benchmark(name, name, "acc", zoo_tasks.DATASET_ID, zoo_tasks.TASKS_DIR)
       for name in zoo_tasks.TASK_NAMES.values()},
}


def local_wrapper(bench: Benchmark, data_dir: Path) -> dict:
    """The wrapper group config that points lm-eval's registered group at local record files."""
    files = {}
    for split, rel in bench.files.items():
        path = (data_dir / rel).resolve()
        if not path.is_file():
            raise ReleaseError(f"fitness.data_dir: {data_dir / rel} not found: {bench.name} needs "
                               f"{', '.join(bench.files.values())} under data_dir (the layout of ../shared/data)")
        files[split] = str(path)
    override = {"group": bench.target, "dataset_path": bench.dataset_path,
                "dataset_kwargs": {"data_files": files, **(bench.dataset_kwargs or {})}}
    return {"group": f"darwin_local_{bench.name}", "task": [override]}


def write_task_configs(names: list[str], data_dir: Path | None, task_dir: Path, synthetic_items: int,
                       seed: int) -> tuple[list[str], list[Path]]:
    """Write what lm-eval must load for `names`; return (names to load, folders to index).

    Only the needed folders are indexed: indexing all of lm-eval's ~15k YAMLs costs seconds per run.
    """
    specs, dirs = [], []
    for name in names:
        bench = BENCHMARKS[name]
        if bench.task_dir is None:
            synthetic.write_synthetic_task(task_dir, task_dir.parent / "data", synthetic_items, seed)
            specs.append(bench.target)
            continue
        if bench.task_dir not in dirs:  # the zoo tasks share one folder
            dirs.append(bench.task_dir)
        if data_dir is None or bench.files is None:
            specs.append(bench.target)  # by name: lm-eval downloads the Hub dataset, or reads shipped records
        else:
            wrapper = local_wrapper(bench, Path(data_dir))
            write_yaml(task_dir / f"{wrapper['group']}.yaml", wrapper)
            specs.append(wrapper["group"])
    if any(task_dir.glob("*.yaml")):
        dirs.append(task_dir)
    return specs, dirs
