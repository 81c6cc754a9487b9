"""The search checkpoint: the search's own state (JSON) and what CMA-ES was told (arrays), in one `.npz`.

Nothing in it can run code: numpy reads it with `allow_pickle=False`. CMA-ES's internal state is not
stored but replayed: the same options and the same seeded generator, asked and told each saved
generation again, give back exactly the strategy that was saved (the candidates it asks are checked
against the saved ones, so a damaged or foreign file is refused rather than silently followed).
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from release.errors import ReleaseError
from release.run.files import write_atomic

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.npz"
PICKLED = "checkpoint.pkl"  # what versions before issue 22 wrote: never loaded (a pickle can run code)
FORMAT = 1


def save_checkpoint(path: Path, state: dict, candidates: list, fitness: list) -> None:
    """`candidates`: per generation, the points CMA-ES asked (popsize x dimensions); `fitness`: their values."""
    buffer = io.BytesIO()
    np.savez(buffer, format=np.array(FORMAT), state=np.array(json.dumps(state)),
             candidates=np.asarray(candidates, dtype=np.float64), fitness=np.asarray(fitness, dtype=np.float64))
    write_atomic(path, buffer.getvalue())


def read_checkpoint(path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """(state, candidates [generations, popsize, dimensions], fitness [generations, popsize]); a file that is
    not such a checkpoint is a one-line error."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            version, state = int(saved["format"]), json.loads(str(saved["state"]))
            candidates, fitness = saved["candidates"], saved["fitness"]
        ok = (version == FORMAT and isinstance(state, dict) and candidates.ndim == 3 and fitness.ndim == 2
              and candidates.shape[:2] == fitness.shape and candidates.dtype == fitness.dtype == np.float64)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError):
        ok = False
    if not ok:
        raise ReleaseError(f"search checkpoint {path} is corrupt or not a checkpoint of this version: start a new "
                           "search (--force breed, or breed without --resume)")
    return state, candidates, fitness


def discard_pickled(folder: Path) -> bool:
    """An older version's pickled checkpoint is never unpickled (anyone who can write the run folder could
    have made it run code): it is removed, and the search starts over (same config, same genome)."""
    path = folder / PICKLED
    if not path.exists() or (folder / CHECKPOINT).exists():
        return False
    log.warning("search checkpoint %s is a pickle from an older darwin-release: it is not loaded (a pickle can "
                "run code) but removed, and the search starts over", path)
    path.unlink()
    return True


def replay(es, candidates: np.ndarray, fitness: np.ndarray, path: Path) -> None:
    """Tell a fresh CMA-ES (made as the saved one was) every saved generation again, checking that it asks
    the saved candidates; minimises, like cma, the negated fitness."""
    for generation, (saved, values) in enumerate(zip(candidates, fitness)):
        xs = es.ask()
        if np.shape(xs) != saved.shape or not np.allclose(xs, saved, rtol=1e-9, atol=1e-12):
            raise ReleaseError(f"search checkpoint {path} does not match this search at generation {generation} "
                               "(another config, cma version or a damaged file): start a new search (--force breed)")
        es.tell(xs, [-float(v) for v in values])
