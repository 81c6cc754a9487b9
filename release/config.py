"""The release config: one YAML file describes a whole release.

Validated with pydantic so that a typo or a wrong type is a one-line error naming the key
(`genome.r_max: Input should be a valid number`), before any stage does work.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from release.errors import ReleaseError

# --- checks shared by several fields (each raises ValueError: pydantic names the key) ---------------

# The Hub's repo id rule, as huggingface_hub.utils.validate_repo_id (2.4) checks it, for `owner/name`.
# Copied rather than imported: importing huggingface_hub reads HF_ENDPOINT, which the CLI sets later.
_REPO_PART = r"\w(?:[\w.-]{0,94}\w)?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}", re.ASCII)


def _repo_id(value: str) -> str:
    if not _REPO_ID.fullmatch(value) or "--" in value or ".." in value or value.endswith(".git"):
        raise ValueError(f"{value!r} is not a Hub repo id: write owner/name with letters, digits, '-', '_' "
                         "or '.', not starting or ending with '-' or '.', without '--' or '..' (max 96 each)")
    return value


RepoId = Annotated[str, AfterValidator(_repo_id)]

# A branch, tag or commit, as git's ref-name rules allow (`git check-ref-format`), in the characters the Hub
# uses. The name becomes a path in the HF cache (refs/NAME) and the local store: no `..`, no leading `/`.
_GIT_REF = re.compile(r"(?![/.])(?!.*(?:\.\.|//|/\.|\.lock/|@\{))[\w./-]+(?<![/.])(?<!\.lock)", re.ASCII)


def _git_ref(value: str) -> str:
    if not _GIT_REF.fullmatch(value):
        raise ValueError(f"{value!r} is not a branch, tag or commit name: use letters, digits, '-', '_', '.' and "
                         "'/' (no '..', no leading or trailing '/' or '.'), e.g. main or refs/pr/1")
    return value


GitRef = Annotated[str, AfterValidator(_git_ref)]

_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
MIN_SHARD_SIZE = 100 * 10**3  # smaller shards only make one file per tensor


def parse_size(size: str | int) -> int:
    """'5GB' -> bytes, as transformers' max_shard_size (decimal units)."""
    if isinstance(size, int):
        return size
    s = size.strip().upper()
    for unit, factor in _SIZE_UNITS.items():
        number = s[: -len(unit)].strip()
        if s.endswith(unit) and number.replace(".", "", 1).isdigit():
            return int(float(number) * factor)
    raise ValueError(f"{size!r} is not a size: write it like '5GB' or '500MB'")


def _shard_size(value: str) -> str:
    if parse_size(value) < MIN_SHARD_SIZE:
        raise ValueError(f"{value!r} is too small: give at least 100KB (real checkpoints use '5GB')")
    return value


def _endpoint(value: str | None) -> str | None:
    if value is None or value == "local":
        return value
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{value!r} is not an endpoint: write 'local' or a URL like https://huggingface.co")
    if url.username or url.password:  # it would be recorded in the run folder and printed
        raise ValueError("credentials do not belong in the endpoint URL: export HF_TOKEN instead")
    return value


def _run_name(value: str) -> str:
    # "." or ".." would make the runs folder (or the checkout) itself the run folder.
    if not value.strip("."):
        raise ValueError(f"{value!r} is not a run name: use letters or digits, e.g. my-release")
    return value


def _text_file(value: Path | None) -> Path | None:
    if value is None:
        return value
    if not value.is_file():
        raise ValueError(f"{value} not found: give the path of a text file (relative to where you run)")
    try:
        value.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{value} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    return value


def _existing_dir(value: Path | None) -> Path | None:
    if value is not None and not value.is_dir():
        raise ValueError(f"{value} is not a folder: give the folder holding the benchmark records")
    return value


# The tool's own folders: the run folder and the local store are written (parts replaced whole), so neither
# may be one of them, lie inside one, or contain the checkout.
_TOOL_ROOT = Path(__file__).resolve().parents[1]
_TOOL_DIRS = ("release", "modeling", "space", "cards", "configs", "tests", "bench", ".git")


def _check_own_folder(folder: Path, what: str, fix: str) -> None:
    path = folder.resolve()
    own = [_TOOL_ROOT / d for d in _TOOL_DIRS]
    if path == _TOOL_ROOT or path in _TOOL_ROOT.parents or any(path == d or d in path.parents for d in own):
        raise ValueError(f"the {what} {folder} would overlap darwin-release's own files: {fix}")


# Hub user access tokens (hf_ followed by ~34 letters); also the older api_ org tokens.
_TOKEN_SHAPED = re.compile(r"^(hf_|api_)[A-Za-z0-9]{20,}$")
# The same inside any config value (a token in a commit message or card field would be published).
_TOKEN_ANYWHERE = re.compile(r"(?<![A-Za-z0-9])(hf_|api_)[A-Za-z0-9]{20,}")


class _Strict(BaseModel):
    # NaN or infinity anywhere would make every fitness NaN: numbers must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RepoRef(_Strict):
    # A Hub model repo id, owner/name.
    repo: RepoId
    # A branch, tag or commit; a branch is pinned to its commit at the first pull.
    revision: GitRef = "main"


def _branch_name(value: str) -> str:
    # refs/pr/N is someone's pull request, refs/convert/... the Hub's own: a release commits to a branch it names.
    if value.startswith("refs/"):
        raise ValueError(f"{value!r} is a ref, not a branch name: give a plain branch name, e.g. darwin-release "
                         "(use on_existing: pr to open a pull request)")
    return value


class BranchTarget(_Strict):
    # Push to this branch of an existing repo; main is left as it is.
    branch: Annotated[GitRef, AfterValidator(_branch_name)]


class ChildSpec(_Strict):
    # Where the child is pushed: a model repo your token may write.
    repo: RepoId
    # Largest safetensors shard of the child, e.g. 5GB or 500MB (decimal units, as transformers).
    max_shard_size: Annotated[str, AfterValidator(_shard_size)] = "5GB"
    # None: "Release <name>: child of <father> x <mother>".
    commit_message: str | None = None
    # What to do when child.repo exists and holds something this release did not write (see README):
    # refuse (default), pr (open a pull request), {branch: NAME}, or replace (one commit, stale files deleted).
    on_existing: Literal["refuse", "pr", "replace"] | BranchTarget = "refuse"


class SpaceSpec(_Strict):
    # The Gradio Space that chats with the child; leave out `space:` for none.
    repo: RepoId
    # A huggingface_hub SpaceHardware name (cpu-basic, zero-a10g, a10g-small, ...); None: the Hub's default.
    hardware: str | None = None
    # Passed to the Space as public variables (MODEL_ID is always set to the child repo).
    variables: dict[str, str] = {}
    # Names of Space secrets; each value is read from the environment variable of that name at deploy time.
    secrets: list[str] = []
    # Example prompts shown under the chat (a click sends one); passed to the Space as its EXAMPLES variable.
    examples: list[str] = []
    # An existing Space this release did not deploy: refuse (default) or replace it (see README).
    on_existing: Literal["refuse", "replace"] = "refuse"

    @field_validator("variables")
    @classmethod
    def _no_tokens(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if _TOKEN_SHAPED.match(value.strip()):
                raise ValueError(f"{key} looks like a Hub token, and Space variables are public: list it under "
                                 "space.secrets and export its value in the environment instead")
        return v

    @field_validator("secrets")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        bad = [name for name in v if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an environment variable name")
        return v


class GenomeSpec(_Strict):
    # Father layers pinned at ratio 0 (they keep their own FFN, or tensors for weight merges).
    frozen: list[int] = []
    # Upper bound of every searched ratio (the mother's share).
    r_max: float = Field(0.5, gt=0, le=1)
    # father layer i -> mother layer; None = round(i * (L_m - 1) / (L_f - 1))
    layer_map: list[int] | None = None
    # The search's starting ratio for every free layer (0 = the father).
    init_mean: float = Field(0.1, ge=0, le=1)
    # Per-dimension step-size scales (CMA_stds); None = all 1.
    scales: list[float] | None = None
    # Darwin MRI trust: search tau in [0, 1] too; candidate ratios = clip(tau * r_MRI + (1 - tau) * g).
    mri: bool = False
    # With mri: tau's starting value.
    mri_trust_init: float = Field(0.5, ge=0, le=1)
    # After the search: ratios below the first value become 0 (the father's FFN, or for weight merges his
    # attention/FFN/norms tensors), above the second 1 (the mother's).
    transplant: tuple[float, float] | None = None

    @field_validator("transplant")
    @classmethod
    def _ordered_thresholds(cls, v):
        if v is not None and not 0 <= v[0] < v[1] <= 1:
            raise ValueError("give two thresholds 0 <= low < high <= 1, e.g. [0.15, 0.85]")
        return v

    def dimensions(self, n_layers: int) -> int:
        """How many coordinates CMA-ES searches: one ratio per free layer, plus tau with `mri`."""
        return n_layers - len([i for i in self.frozen if i < n_layers]) + int(self.mri)

    @field_validator("frozen")
    @classmethod
    def _no_negative(cls, v: list[int]) -> list[int]:
        if any(i < 0 for i in v):
            raise ValueError("layer indices must be >= 0")
        return sorted(set(v))

    @field_validator("scales")
    @classmethod
    def _positive_scales(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(s <= 0 for s in v):
            raise ValueError("step-size scales must be > 0 (one per father layer)")
        return v

    @model_validator(mode="after")
    def _init_within_bounds(self) -> GenomeSpec:
        if self.init_mean > self.r_max:
            raise ValueError(f"init_mean {self.init_mean} is above r_max {self.r_max}: start inside [0, r_max]")
        return self


class BreedSpec(_Strict):
    # The breeder (release/breeders/): "ffn_blend" blends FFN outputs across architectures (Gemma 4 x Qwen3.5);
    # "linear", "slerp", "ties", "dare_ties" merge the weights of two parents of one architecture.
    method: Literal["ffn_blend", "linear", "slerp", "ties", "dare_ties"] = "ffn_blend"
    # TIES/DARE: the searched `density` gene (fraction of the task vector kept) lies in [density_min, density_max].
    # Not below 0.5 by default: a DARE merge of trained parents collapses at lower densities (bench_trained_parents).
    density_min: float = Field(0.5, gt=0, le=1)
    density_max: float = Field(1.0, gt=0, le=1)
    density_init: float = Field(0.6, gt=0, le=1)
    # DARE's drop-mask seed; None = search.seed.
    seed: int | None = None
    # DARE's rescale of the surviving task vector: "inverse_density" (1 / density, the paper's) or "l1" (to the
    # task vector's L1 norm, mergekit's default).
    dare_rescale: Literal["inverse_density", "l1"] = "inverse_density"

    def search_key(self) -> dict:
        """What the search checkpoint depends on: dare_rescale only when it is not its default, so searches
        checkpointed before it existed still resume."""
        return self.model_dump(exclude={"dare_rescale"} if self.dare_rescale == "inverse_density" else set())

    def __repr_args__(self):
        # Stage keys hash this text: unchanged, for runs made before dare_rescale existed, while it is the default.
        return [(k, v) for k, v in super().__repr_args__() if not (k == "dare_rescale" and v == "inverse_density")]

    @model_validator(mode="after")
    def _density_order(self) -> BreedSpec:
        if not self.density_min <= self.density_init <= self.density_max:
            raise ValueError(f"need density_min <= density_init <= density_max, got {self.density_min}, "
                             f"{self.density_init}, {self.density_max}")
        return self


class SearchSpec(_Strict):
    # CMA-ES candidates per generation.
    popsize: int = Field(8, ge=2)
    # CMA-ES initial step size.
    sigma0: float = Field(0.1, gt=0)
    # The search stops at the first of max_generations, max_evaluations and time_budget_s (None: no limit).
    max_generations: int | None = Field(10, ge=1)
    max_evaluations: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)
    # Seeds CMA-ES and the search/held-out item subsets: the same config gives the same child.
    seed: int = 42
    # auto: cuda when present.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bfloat16 on cuda, float32 on cpu.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Scale-out (release.search.distributed): workers > 1 or a ray_address scores candidates on Ray actors.
    workers: int = Field(1, ge=1)
    # None: a local Ray instance sized to `workers`; "auto" or "ray://host:port": an existing cluster.
    ray_address: str | None = None
    # How long joining ray_address may take before it is an error (a port that is not Ray never answers).
    ray_connect_timeout_s: float = Field(20.0, gt=0)
    # What one worker needs, in Ray's resource names, e.g. {GPU: 1}; empty = {CPU: 1}.
    worker_resources: dict[str, Annotated[float, Field(ge=0)]] = {}
    # Live dashboard (release.search.tracking): every candidate and generation logged to trackio.
    track: bool = False
    # Also push the dashboard to this Space on the configured Hub after every generation (release.search.tracking_space).
    track_space: RepoId | None = None
    # The winner's curse guard (release.search.start): the searched best ships only if, scored again beside
    # the start (genome.init_mean), it beats it by more than this many standard errors of their difference;
    # 0 = the best always ships. Default: 2 for weight merges (their start is the plain 50/50 merge), 0 for ffn_blend.
    start_margin: float = Field(0.0, ge=0)


def _data_files(value):
    """Local record files: a path, a list of paths, or split -> path(s); every file must exist."""
    if value is None:
        return value
    by_split = value if isinstance(value, dict) else {None: value}
    for split, paths in by_split.items():
        for path in [paths] if isinstance(paths, str) else paths:
            if not Path(path).is_file():
                where = f" (split {split})" if split else ""
                raise ValueError(f"{path}{where} not found: give local JSON, JSONL, CSV or parquet record files")
    return value


DataFiles = Annotated[str | list[str] | dict[str, str | list[str]] | None, AfterValidator(_data_files)]


class TaskSpec(_Strict):
    # Any lm-eval task, group or tag name (resolved by lm-eval's TaskManager when the suite is built), or
    # one of the aliases "click" (lm-eval's click group), "musr" (leaderboard_musr) and "synthetic" (built in).
    # The trained tiny zoo's skills (release/zoo/tasks/: zoo_lang_a, zoo_lang_b, zoo_base) resolve without include_path.
    name: Annotated[str, Field(min_length=1)]
    weight: float = Field(gt=0)
    # lm-eval's "metric,filter" key (e.g. "acc,none", "exact_match,strict-match"); None = the task's own
    # first metric (a group's aggregated one) and first filter.
    metric: str | None = None
    num_fewshot: int | None = Field(None, ge=0)  # None = the task's own (0 if it names none)
    search_size: int = Field(100, ge=1)
    heldout_size: int | None = Field(None, ge=1)  # None = every item not in the search subset
    # Local records for this task (JSON/JSONL/CSV/parquet): a path (the task's evaluation split), a list,
    # or split -> path(s). lm-eval's own prompts, filters and metrics still apply.
    data_files: DataFiles = None

    def __repr_args__(self):
        # Stage keys hash this text: unchanged for a task that sets none of the keys added with any-task fitness.
        return [(k, v) for k, v in super().__repr_args__() if not (k in _TASK_ADDED and v is None)]


def _existing_dirs(value: list[Path]) -> list[Path]:
    for folder in value:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder: give folders holding lm-eval task YAMLs")
    return value


class CalibrationSpec(_Strict):
    # Calibration fitness (kind: calibration): the whole text is scored, every token once, in chunks of this
    # many predicted tokens (one forward pass each; also the most tokens of one prompt/answer record).
    chunk_tokens: int = Field(512, ge=1)
    # Answer-only scoring: each line is prompt, separator, answer, and only the answer's tokens count. A
    # calibration_text ending in .jsonl holds {"prompt": ..., "answer": ...} per line (answers only, too).
    separator: Annotated[str, Field(min_length=1)] | None = None
    # This share of the records (chunks or lines), drawn with search.seed, is never searched: the final
    # evaluation scores it for the card.
    heldout: float = Field(0.2, ge=0, lt=1)


class IrtSpec(_Strict):
    # fitness.estimator irt (release.search.estimators.irt): items fitted on the parents, the start and `probes` seeded
    # candidates scored on the whole search subset; each generation then answers `anchors` items, one drawn per
    # cluster of alike items.
    anchors: int = Field(24, ge=2)
    probes: int = Field(0, ge=0)
    dims: int = Field(2, ge=1)  # ability dimensions of the IRT model (a merge of two specialists has two skills)


class RaceSpec(_Strict):
    # fitness.estimator race (release.search.estimators.race): a generation answers items in rounds of `round_items`
    # until every candidate's rank is settled with `confidence`; differences under `tie` do not count.
    confidence: float = Field(0.9, gt=0, lt=1)
    round_items: int = Field(8, ge=1)
    tie: float = Field(0.0, ge=0)
    # The most items a candidate answers in a generation (None: every search item, which saves nothing when a
    # generation's candidates are closer than the item noise). Each generation races on a fresh draw of items,
    # so a small budget is averaged over generations by CMA-ES.
    max_items: int | None = Field(32, ge=1)


_ESTIMATOR_KEYS = ("estimator", "elite", "irt", "race")
_ANY_TASK_DEFAULTS = {"include_path": [], "max_gen_toks": None}  # fitness keys of any-task fitness, as defaults
_TASK_ADDED = ("metric", "num_fewshot", "data_files")  # task keys of any-task fitness (default None)


class FitnessSpec(_Strict):
    kind: Literal["benchmark", "calibration"] = "benchmark"
    tasks: list[TaskSpec] = []
    # Folder with click/ and musr/ record files for offline runs; None = download from the Hub.
    data_dir: Annotated[Path | None, AfterValidator(_existing_dir)] = None
    # Folders of the user's own lm-eval task YAMLs (as `lm_eval --include_path`).
    include_path: Annotated[list[Path], AfterValidator(_existing_dirs)] = []
    scorer: Literal["fast", "stock"] = "fast"
    batch_size: int = Field(8, ge=1)
    # generate_until tasks: the most tokens generated per item (None = the task's own generation_kwargs).
    max_gen_toks: int | None = Field(None, ge=1)
    # The final evaluation also writes lm-eval's per-item samples_<task>_<date>.jsonl (pushed with the child).
    log_samples: bool = False
    # Calibration fitness: a text file scored by mean log-likelihood (None = built-in text).
    calibration_text: Annotated[Path | None, AfterValidator(_text_file)] = None
    calibration: CalibrationSpec = CalibrationSpec()
    # How the search scores a candidate: full (every search item), irt (anchor items and an IRT estimate) or
    # race (a generation's items until ranks are settled). The final evaluation always scores every held-out item.
    estimator: Literal["full", "irt", "race"] = "full"
    # With an estimator: the child is the best, by full scoring of the search subset, of the search's final
    # mean and this many best estimated candidates (the best of many estimates is biased upward).
    elite: int = Field(0, ge=0)
    irt: IrtSpec = IrtSpec()
    race: RaceSpec = RaceSpec()

    def search_key(self) -> dict:
        """What the search checkpoint depends on. Keys added after the first release stay out while they hold
        their defaults, so older checkpoints still resume: the estimator's settings with full scoring, and
        any-task fitness's include_path, max_gen_toks and the tasks' metric, num_fewshot, data_files;
        log_samples always (it only changes what the final evaluation writes)."""
        hidden = (set(_ESTIMATOR_KEYS) if self.estimator == "full" else set()) | {"log_samples"}
        if self.calibration == CalibrationSpec():  # as a benchmark search never reads it (search/key.py)
            hidden.add("calibration")
        key = {k: v for k, v in self.model_dump(exclude=hidden).items()
               if not (k in _ANY_TASK_DEFAULTS and v == _ANY_TASK_DEFAULTS[k])}
        key["tasks"] = [{k: v for k, v in t.items() if not (k in _TASK_ADDED and v is None)} for t in key["tasks"]]
        return key

    def __repr_args__(self):
        # Stage keys hash this text (release.run.stages.digest): while the keys added later hold their defaults
        # it stays what it was before they existed, so runs made then are still up to date.
        hidden = set(_ESTIMATOR_KEYS) if self.estimator == "full" else set()
        hidden |= {k for k, default in {**_ANY_TASK_DEFAULTS, "log_samples": False}.items()
                   if getattr(self, k) == default}
        if self.calibration == CalibrationSpec():  # likewise the calibration settings at their defaults
            hidden.add("calibration")
        return [(k, v) for k, v in super().__repr_args__() if k not in hidden]

    @model_validator(mode="after")
    def _estimators_need_benchmarks(self) -> FitnessSpec:
        if self.estimator != "full" and self.kind != "benchmark":
            raise ValueError(f"estimator {self.estimator} estimates benchmark scores from items: use it with "
                             "kind: benchmark, or set estimator: full")
        return self

    @field_validator("include_path", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, (str, Path)) else v

    @model_validator(mode="after")
    def _tasks_for_benchmark(self) -> FitnessSpec:
        if self.kind == "benchmark" and not self.tasks:
            raise ValueError("benchmark fitness needs at least one task under fitness.tasks")
        names = [t.name for t in self.tasks]
        if len(names) != len(set(names)):
            raise ValueError(f"tasks listed twice: {names}")
        return self


class MriSpec(_Strict):
    # Probe prompts per domain (a seeded subset of release/mri/probe_prompts.yaml); None = all of them.
    prompts_per_domain: int | None = Field(None, ge=1)
    static_weight: float = Field(0.4, ge=0, le=1)  # Darwin V6: MRI = 0.4 * static + 0.6 * probe
    # Bins of the |w| histogram whose entropy is the static MRI statistic.
    histogram_bins: int = Field(256, ge=2)


class HealthSpec(_Strict):
    # Compare the child with both parents layer by layer before push.
    enabled: bool = True
    # A failed check stops the release before push; false records it and pushes anyway.
    stop_on_failure: bool = True
    # A layer is flagged when its FFN update diverges from both parents' branches: cosine below min_cosine
    # or norm off by more than max_norm_ratio (either way).
    min_cosine: float = Field(0.5, ge=-1, le=1)
    max_norm_ratio: float = Field(3.0, gt=1)
    # The child's perplexity may exceed the worse parent's by at most this factor.
    max_perplexity_ratio: float = Field(2.0, gt=1)
    new_tokens: int = Field(8, ge=1)  # greedy generation sanity check


class CardSpec(_Strict):
    # A Hub licence identifier (https://huggingface.co/docs/hub/repositories-licenses), or `other` with
    # license_name (and license_link to its text).
    license: str = "apache-2.0"
    license_name: str | None = None
    license_link: str | None = None
    # Language codes for the card's front matter.
    languages: list[str] = ["en"]
    # The card's opening paragraph (also the Space's short description).
    description: str = ""
    # Free-form lineage shown in the card, e.g. {"grandfather": "google/gemma-4-E4B-it"}.
    genealogy: dict[str, str] = {}
    # A BibTeX entry for the card's citation section.
    citation: str | None = None
    # Extra Hub tags, after the tool's own.
    tags: list[str] = []


class HubSpec(_Strict):
    # None = the real Hub (or HF_ENDPOINT); "local" = the project's endpoint on 127.0.0.1.
    endpoint: Annotated[str | None, AfterValidator(_endpoint)] = None
    # Create the child, Space (and tracking Space) as private repos.
    private: bool = False
    # Where the embedded local endpoint keeps its repos (relative to the config's folder's parent).
    local_root: Path = Path(".hub")
    # The embedded local endpoint's port on 127.0.0.1.
    local_port: int = Field(8765, ge=1, le=65535)


def calibration_pairs(text: str, jsonl: bool, separator: str | None) -> list[tuple[str, str]] | None:
    """The prompt/answer pairs of an answer-only calibration text, or None for plain text (scored whole).

    JSONL: one {"prompt": ..., "answer": ...} per line; else each line is prompt, separator, answer (the
    prompt keeps the separator). Read here so a malformed file fails at load, before any stage runs."""
    if not jsonl and separator is None:
        return None
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                row = json.loads(line)
                pairs.append((str(row["prompt"]), str(row["answer"])))
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"line {n} is not a JSON object with 'prompt' and 'answer': write one "
                                 '{"prompt": ..., "answer": ...} per line') from None
        elif separator not in line:
            raise ValueError(f"line {n} has no separator {separator!r}: write each line as prompt, separator, "
                             "answer (or drop fitness.calibration.separator)")
        else:
            prompt, answer = line.split(separator, 1)
            pairs.append((prompt + separator, answer))
    if not pairs:
        raise ValueError("holds no prompt/answer pair: add some, one per line")
    return pairs


def local_paths(config: ReleaseConfig) -> list[str]:
    """Paths of this machine a public card or Space must never show: home, temp, working folder, and the
    config's own folders and files, as resolved and as written when absolute."""
    paths = [Path.home(), Path(tempfile.gettempdir()), Path.cwd(), config.fitness.data_dir,
             config.fitness.calibration_text, config.hub.local_root, config.runs_dir]
    found = {str(Path(p).expanduser().resolve()) for p in paths if p is not None}
    found |= {str(Path(p).expanduser()) for p in paths if p is not None and Path(p).expanduser().is_absolute()}
    return sorted(p for p in found if p not in ("/", ".") and len(p) > 1)


# Defaults of a weight merge (breed.method other than ffn_blend) where its config names none.
WEIGHT_MERGE_GENOME = {"r_max": 1.0, "init_mean": 0.5}
WEIGHT_MERGE_SEARCH = {"start_margin": 2.0}


class ReleaseConfig(_Strict):
    # The release's name: its run folder is runs_dir/name.
    name: Annotated[str, Field(pattern=r"^[\w.-]+$"), AfterValidator(_run_name)]
    # The father: with ffn_blend a Gemma 4 model whose attention, embeddings and LM head the child keeps; with a
    # weight merge the first parent (the base of the merge unless `base` names a common ancestor).
    father: RepoRef
    # The mother: with ffn_blend a Qwen3.5 model whose FFNs are blended in; with a weight merge the other parent.
    mother: RepoRef
    # The common ancestor of two same-architecture siblings (ties, dare_ties): the merge takes the task vectors
    # father - base and mother - base, as mergekit's base_model. None: the father is the base (one task vector).
    base: RepoRef | None = None
    # The child's Hub repo and how it is written and pushed.
    child: ChildSpec
    # The Space that chats with the child; none when left out.
    space: SpaceSpec | None = None
    # How the child is made (the breeder) and its merge options.
    breed: BreedSpec = BreedSpec()
    # What CMA-ES searches: one ratio per father layer, their bounds, frozen layers, MRI trust.
    genome: GenomeSpec = GenomeSpec()
    # CMA-ES, its limits, the device, and scale-out or tracking.
    search: SearchSpec = SearchSpec()
    # What a candidate is scored on (weighted benchmark tasks, or calibration text).
    fitness: FitnessSpec
    # Darwin MRI: the parents' layer-by-layer diagnosis.
    mri: MriSpec = MriSpec()
    # The child's health check against both parents, before push.
    health: HealthSpec = HealthSpec()
    # The model card: licence, languages, description, lineage.
    card: CardSpec = CardSpec()
    # Which Hub: the real one (or HF_ENDPOINT), or the project's local endpoint.
    hub: HubSpec = HubSpec()
    @model_validator(mode="before")
    @classmethod
    def _defaults_for_weight_merges(cls, data):
        """Weight merges of trained parents start neutral: every share 0.5 in [0, 1] (the plain 50/50 merge),
        kept unless a candidate clearly beats it; a config's own values always win."""
        if not isinstance(data, dict):
            return data
        breed = data.get("breed") or {}
        method = breed.get("method", "ffn_blend") if isinstance(breed, dict) else getattr(breed, "method", None)
        if method in (None, "ffn_blend"):
            return data
        data = dict(data)
        for section, defaults in (("genome", WEIGHT_MERGE_GENOME), ("search", WEIGHT_MERGE_SEARCH)):
            given = data.get(section)
            if given is None or isinstance(given, dict):
                data[section] = {**defaults, **(given or {})}
        return data

    # Build tiny parents and publish them to the local endpoint when absent (embedded default only).
    # "zoo": publish the trained tiny zoo's models (release/zoo/) instead of random tiny parents.
    tiny_parents: bool | Literal["zoo"] = False
    # The folder of run folders (relative to where the command runs).
    runs_dir: Path = Path("runs")

    @model_validator(mode="after")
    def _trust_and_transplant_together_for_ffn_blend_only(self) -> ReleaseConfig:
        if self.genome.mri and self.genome.transplant and self.breed.method != "ffn_blend":
            raise ValueError(f"genome.mri and genome.transplant together are not wired to breed.method "
                             f"{self.breed.method} yet: keep one of them")
        return self

    @model_validator(mode="after")
    def _base_for_task_vector_merges_only(self) -> ReleaseConfig:
        if self.base is not None and self.breed.method not in ("ties", "dare_ties"):
            raise ValueError(f"base: a common ancestor is for breed.method ties or dare_ties (task vectors over "
                             f"it); {self.breed.method} does not use one: remove base, or choose ties/dare_ties")
        return self

    @model_validator(mode="after")
    def _estimators_in_process(self) -> ReleaseConfig:
        if self.fitness.estimator != "full" and (self.search.workers > 1 or self.search.ray_address is not None):
            raise ValueError(f"fitness.estimator {self.fitness.estimator} scores in this process only: set "
                             "search.workers 1 without ray_address, or fitness.estimator full")
        return self

    @model_validator(mode="after")
    def _never_over_a_parent(self) -> ReleaseConfig:
        parents = {self.father.repo.lower(), self.mother.repo.lower()} | ({self.base.repo.lower()} if self.base else set())
        for key, repo in (("child.repo", self.child.repo), ("space.repo", self.space and self.space.repo)):
            if repo and repo.lower() in parents:
                raise ValueError(f"{key} {repo} is a parent of this release: pushing there would overwrite it; "
                                 "name a repo of its own")
        return self

    @model_validator(mode="after")
    def _layer_map_for_ffn_blend_only(self) -> ReleaseConfig:
        if self.genome.layer_map is not None and self.breed.method != "ffn_blend":
            raise ValueError(f"genome.layer_map is for ffn_blend (across architectures); {self.breed.method} pairs "
                             "layer i with layer i: remove genome.layer_map")
        return self

    @model_validator(mode="after")
    def _calibration_text_readable(self) -> ReleaseConfig:
        f = self.fitness
        jsonl = f.calibration_text is not None and f.calibration_text.suffix == ".jsonl"
        if jsonl and f.calibration.separator is not None:
            raise ValueError("fitness.calibration.separator is for a plain text file; a .jsonl calibration_text "
                             "already holds prompt and answer apart: drop the separator")
        if f.kind == "calibration" and f.calibration_text is not None:
            try:
                calibration_pairs(f.calibration_text.read_text(encoding="utf-8"), jsonl, f.calibration.separator)
            except ValueError as e:
                raise ValueError(f"fitness.calibration_text {f.calibration_text}: {e}") from None
        return self

    @model_validator(mode="after")
    def _card_fields_hold_no_local_path(self) -> ReleaseConfig:
        # The card is rendered after breed, emit and health: a local path in it would fail only then.
        fields = {"card.description": self.card.description, "card.citation": self.card.citation or "",
                  **{f"card.genealogy.{k}": f"{k} {v}" for k, v in self.card.genealogy.items()},
                  **{f"card.tags[{i}]": tag for i, tag in enumerate(self.card.tags)}}
        for local in local_paths(self) + ["/tmp/"]:
            pattern = re.compile(re.escape(local) + r"(?![\w.-])")
            for key, text in fields.items():
                if pattern.search(text):
                    raise ValueError(f"{key} holds a local path of this machine, and the card is public: name "
                                     "a Hub repo or a URL instead")
        return self

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    @model_validator(mode="after")
    def _folders_of_their_own(self) -> ReleaseConfig:
        _check_own_folder(self.run_dir, "run folder", "choose runs_dir and name so that runs_dir/name is a "
                          "folder of its own (the default is runs/<name>)")
        if self.hub.endpoint == "local":
            _check_own_folder(self.hub.local_root, "local store (hub.local_root)", "give it a folder of its own "
                              "(the default is .hub)")
        return self


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key{_nearest_key(error['loc'])}; every key is in docs/config.md"
    if error["type"] == "missing":
        return f"{where}: a required key is missing (every key is in docs/config.md)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _nearest_key(loc: tuple) -> str:
    """' (did you mean 'search'?)' for a misspelt key at `loc`, else the keys valid there."""
    import difflib

    keys = _keys_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (the keys here: {', '.join(keys)})"


def _keys_at(path: tuple) -> list[str]:
    """The keys valid at a config path, following pydantic's error locations (indexes, union members)."""
    models: list[type[BaseModel]] = [ReleaseConfig]
    for part in path:
        inner = [m for model in models if part in model.model_fields
                 for m in _models_in(model.model_fields[part].annotation)]
        models = inner or [m for m in models if m.__name__ == part] or models  # an index or a union's tag
    return sorted({key for model in models for key in model.model_fields})


def _models_in(annotation) -> list[type[BaseModel]]:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key given twice in one mapping is an error (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice: keep one",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _token_at(value, where: str = "") -> str | None:
    """The key of the first value that holds something token-shaped, or None."""
    if isinstance(value, str):
        return where if _TOKEN_ANYWHERE.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _token_at(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


MAX_NESTING = 32  # far beyond any real config; the checks below walk it recursively


def _nesting(value) -> int:
    """How deeply lists and mappings nest in `value`, counted without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:
                todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_config(path: str | Path) -> ReleaseConfig:
    """Read and validate a release config; every problem is a one-line ReleaseError."""
    path = Path(path)
    if not path.is_file():
        raise ReleaseError(f"config {path} not found: pass the path of a release YAML (see configs/)")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        too_deep = _nesting(raw) > MAX_NESTING
    except RecursionError:  # the YAML parser recurses once per level
        too_deep = True
    except UnicodeDecodeError as e:
        raise ReleaseError(f"config {path}: not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ReleaseError(f"config {path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if too_deep:
        raise ReleaseError(f"config {path}: nested more than {MAX_NESTING} levels deep; a release config is a "
                           "few levels of keys (see configs/default.yaml)")
    if not isinstance(raw, dict):
        raise ReleaseError(f"config {path}: expected a mapping of keys at the top level")
    try:
        config = ReleaseConfig.model_validate(raw)
    except ValidationError as e:
        # A misspelt key also shows up as the missing one it was meant to be: name the typo first; then our
        # own checks (the most specific), before what each member of a union says.
        first = sorted(e.errors(), key=lambda err: (err["type"] != "extra_forbidden",
                                                     err["type"] != "value_error"))[0]
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ReleaseError(f"config {path}: {_describe(first)}{more}") from None
    # Config values are recorded in the run folder, and many are published (card, commit, Space).
    token_key = _token_at(raw)
    if token_key:
        raise ReleaseError(f"config {path}: {token_key} holds what looks like a Hub token: a token never goes "
                           "in a config (it is recorded and may be published); export HF_TOKEN instead")
    return config
