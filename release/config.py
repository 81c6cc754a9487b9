"""The release config: one YAML file describes a whole release.

Validated with pydantic so that a typo or a wrong type is a one-line error naming the key
(`genome.r_max: Input should be a valid number`), before any stage does work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from release.errors import ReleaseError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoRef(_Strict):
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str = "main"


class ChildSpec(_Strict):
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    max_shard_size: str = "5GB"
    commit_message: str | None = None


class SpaceSpec(_Strict):
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    hardware: str | None = None
    # Passed to the Space as variables (MODEL_ID is always set to the child repo).
    variables: dict[str, str] = {}


class GenomeSpec(_Strict):
    frozen: list[int] = []
    r_max: float = Field(0.5, gt=0, le=1)
    # father layer i -> mother layer; None = round(i * (L_m - 1) / (L_f - 1))
    layer_map: list[int] | None = None
    init_mean: float = Field(0.1, ge=0, le=1)
    # Per-dimension step-size scales (CMA_stds); None = all 1.
    scales: list[float] | None = None

    @field_validator("frozen")
    @classmethod
    def _no_negative(cls, v: list[int]) -> list[int]:
        if any(i < 0 for i in v):
            raise ValueError("layer indices must be >= 0")
        return sorted(set(v))


class SearchSpec(_Strict):
    popsize: int = Field(8, ge=2)
    sigma0: float = Field(0.1, gt=0)
    max_generations: int | None = Field(10, ge=1)
    max_evaluations: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class TaskSpec(_Strict):
    # "click", "musr" (lm-eval's click group / leaderboard_musr) or "synthetic".
    name: Literal["click", "musr", "synthetic"]
    weight: float = Field(gt=0)
    search_size: int = Field(100, ge=1)
    heldout_size: int | None = Field(None, ge=1)  # None = every item not in the search subset


class FitnessSpec(_Strict):
    kind: Literal["benchmark", "calibration"] = "benchmark"
    tasks: list[TaskSpec] = []
    # Folder with click/ and musr/ record files for offline runs; None = download from the Hub.
    data_dir: Path | None = None
    scorer: Literal["fast", "stock"] = "fast"
    batch_size: int = Field(8, ge=1)
    # Calibration fitness: a text file scored by mean log-likelihood (None = built-in text).
    calibration_text: Path | None = None

    @model_validator(mode="after")
    def _tasks_for_benchmark(self) -> FitnessSpec:
        if self.kind == "benchmark" and not self.tasks:
            raise ValueError("benchmark fitness needs at least one task under fitness.tasks")
        names = [t.name for t in self.tasks]
        if len(names) != len(set(names)):
            raise ValueError(f"tasks listed twice: {names}")
        return self


class CardSpec(_Strict):
    license: str = "apache-2.0"
    languages: list[str] = ["en"]
    description: str = ""
    # Free-form lineage shown in the card, e.g. {"grandfather": "google/gemma-4-E4B-it"}.
    genealogy: dict[str, str] = {}
    citation: str | None = None
    tags: list[str] = []


class HubSpec(_Strict):
    # None = the real Hub (or HF_ENDPOINT); "local" = the project's endpoint on 127.0.0.1.
    endpoint: str | None = None
    private: bool = False
    # Where the embedded local endpoint keeps its repos (relative to the config's folder's parent).
    local_root: Path = Path(".hub")
    local_port: int = 8765


class ReleaseConfig(_Strict):
    name: str = Field(pattern=r"^[\w.-]+$")
    father: RepoRef
    mother: RepoRef
    child: ChildSpec
    space: SpaceSpec | None = None
    genome: GenomeSpec = GenomeSpec()
    search: SearchSpec = SearchSpec()
    fitness: FitnessSpec
    card: CardSpec = CardSpec()
    hub: HubSpec = HubSpec()
    # Build tiny parents and publish them to the local endpoint when absent (embedded default only).
    tiny_parents: bool = False
    runs_dir: Path = Path("runs")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "config"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (check its spelling against configs/default.yaml)"
    return f"{where}: {error['msg']}"


def load_config(path: str | Path) -> ReleaseConfig:
    """Read and validate a release config; every problem is a one-line ReleaseError."""
    path = Path(path)
    if not path.is_file():
        raise ReleaseError(f"config {path} not found: pass the path of a release YAML (see configs/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ReleaseError(f"config {path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ReleaseError(f"config {path}: expected a mapping of keys at the top level")
    try:
        return ReleaseConfig.model_validate(raw)
    except ValidationError as e:
        # A misspelt key also shows up as the missing one it was meant to be: name the typo first.
        first = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")[0]
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ReleaseError(f"config {path}: {_describe(first)}{more}") from None
