"""What each stage hands the next: small frozen records, stored in `runs/<name>/stages.json` as JSON.

A stage returns one of these; the pipeline reads its attributes. `to_json` writes exactly the keys the run
folder has always held (the records are the run folder's format, given names), and `from_json` reads them
back; a record missing a field it needs is from another version of the tool.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from release.errors import ReleaseError


class Record:
    """`to_json`/`from_json` by field name; subclasses are frozen dataclasses."""

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict):
        values = {}
        for f in fields(cls):
            if f.name in data:
                values[f.name] = data[f.name]
            elif f.default is MISSING and f.default_factory is MISSING:
                raise ReleaseError(f"a {cls.__name__.lower()} record in stages.json has no {f.name!r}: it is from "
                                   "another version; delete runs/<name>/stages.json and run again")
        return cls(**values)


@dataclass(frozen=True)
class Parent(Record):
    """One pulled parent: the commit it was pinned at, the folder the stages read, and its content digest."""

    repo: str
    revision: str
    path: str
    content: str
    # Only when the breeder chose the files to download (ffn_blend): bytes fetched, bytes in the repo,
    # shards left out. Absent from the JSON otherwise, as before.
    fetched_bytes: int | None = None
    repo_bytes: int | None = None
    skipped_shards: list[str] | None = None

    def to_json(self) -> dict:
        data = super().to_json()
        return {k: v for k, v in data.items() if v is not None or k in ("repo", "revision", "path", "content")}


@dataclass(frozen=True)
class Pulled(Record):
    father: Parent
    mother: Parent
    base: Parent | None = None  # the common ancestor (`base:` in the config); absent from the JSON without one

    def to_json(self) -> dict:
        return {"father": self.father.to_json(), "mother": self.mother.to_json(),
                **({"base": self.base.to_json()} if self.base else {})}

    @classmethod
    def from_json(cls, data: dict) -> Pulled:
        return cls(father=Parent.from_json(data["father"]), mother=Parent.from_json(data["mother"]),
                   base=Parent.from_json(data["base"]) if data.get("base") else None)

    def models(self) -> list[Parent]:
        """Every pulled model: both parents, and the base when there is one."""
        return [self.father, self.mother] + ([self.base] if self.base else [])

    def fetched(self) -> dict:
        """role -> [bytes the pull selected, bytes the repo holds] (absent for pulls recorded before selection)."""
        return {role: [p.fetched_bytes, p.repo_bytes] for role, p in (("father", self.father), ("mother", self.mother))
                if p.fetched_bytes is not None}


@dataclass(frozen=True)
class Diagnosis(Record):
    """The mri stage: r_MRI per father layer and the dominance it implies (details in `path`)."""

    path: str
    r_mri: list[float]
    father_dominant: list[int]
    mother_dominant: list[int]
    thresholds: list[float]
    static_weight: float
    seconds: dict | float  # the scan's time per phase

    def without_time(self) -> dict:
        """What the child records (a rerun's wall time must not change its key)."""
        return {k: v for k, v in self.to_json().items() if k != "seconds"}


# The breed record's own keys; anything else in its JSON is a fact the breeder's live model recorded
# (ffn_blend: layer_map; the weight merges: seed, model_class).
_BRED_KEYS = ("genome", "searched_genome", "searched_x", "tau", "mri_trust", "r_mri", "transplant", "fitness",
              "scores", "generations", "evaluations", "seconds", "stop_reason", "method", "genes", "device", "dtype",
              "estimator", "start")


@dataclass(frozen=True)
class Bred(Record):
    """The breed stage: the genome that ships (after any transplant), CMA-ES's own, and how the search went."""

    genome: list[float]
    fitness: float
    scores: dict
    generations: int
    evaluations: int
    seconds: float
    stop_reason: str | None
    device: str
    dtype: str
    method: str | None = None
    genes: list[str] | None = None  # absent from records written before the breeder registry
    searched_genome: list[float] | None = None
    searched_x: list[float] | None = None  # CMA-ES's raw point of the searched genome (absent from older records)
    tau: float | None = None
    mri_trust: bool = False
    r_mri: list[float] | None = None
    transplant: dict | None = None
    start: dict | None = None  # the start check (release.search.start), when search.start_margin is on
    live: dict[str, Any] = field(default_factory=dict)
    # fitness.estimator irt / race: which, its anchors, the tokens scored and what full scoring would have cost
    # (absent from the JSON with full scoring, as before estimators existed)
    estimator: dict | None = None

    def to_json(self) -> dict:
        data = super().to_json()
        for key in ("searched_x", "estimator", "start"):  # absent when unused, as before they existed (stage keys stay)
            if data[key] is None:
                del data[key]
        return {**data.pop("live"), **data}

    @classmethod
    def from_json(cls, data: dict) -> Bred:
        own = super().from_json({k: v for k, v in data.items() if k in _BRED_KEYS})
        return cls(**{**{f.name: getattr(own, f.name) for f in fields(cls) if f.name != "live"},
                      "live": {k: v for k, v in data.items() if k not in _BRED_KEYS}})


@dataclass(frozen=True)
class Emitted(Record):
    """The emit stage: the child folder, its content digest and its darwin_genome.json."""

    path: str
    digest: str
    genome: dict


@dataclass(frozen=True)
class Health(Record):
    """The health stage's verdict (details in `path`)."""

    path: str
    passed: bool
    reasons: list[str]
    flagged_layers: list


@dataclass(frozen=True)
class Evaluated(Record):
    """The evaluate stage: the child's and both parents' scores on the held-out items (lm-eval's form)."""

    path: str
    results: dict


@dataclass(frozen=True)
class Carded(Record):
    readme: str


@dataclass(frozen=True)
class Pushed(Record):
    """Where the child went: the commit, and whether it is on main, a branch or a pull request."""

    repo: str
    revision: str
    ref: str = "main"
    target: str = "main"
    pr_url: str | None = None
    committed: bool = True


@dataclass(frozen=True)
class Deployed(Record):
    """The Space's commit. Only the secrets' names: their values stay in the environment."""

    repo: str
    revision: str
    variables: dict
    secrets: list[str]


@dataclass(frozen=True)
class Verified(Record):
    """The pushed child loaded back from the Hub: its largest logit difference from the emitted folder, and a reply."""

    repo: str
    revision: str
    max_abs_logit_diff: float
    prompt: str
    reply: str
