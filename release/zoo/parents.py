"""The zoo's models as the parents of the embedded defaults (`tiny_parents: zoo`).

Same contract as a breeder's `tiny_parent_writers`: role -> writer(out, seed) that writes a checkpoint
folder and returns it. A writer copies the committed model after checking its files against
SHA256SUMS, so what is published is what the manifest vouches for. The seed is ignored: the zoo is
trained once, with its own seed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from release.errors import ReleaseError
from release.zoo import manifest

# breed.method -> role -> zoo model. Cross-architecture: Gemma 4 specialist A x the Qwen3.5 mother on B;
# same architecture: the two Gemma 4 specialists, siblings of one base.
CROSS_ARCH = {"father": "lang_a", "mother": "mother_b"}
SAME_ARCH = {"father": "lang_a", "mother": "lang_b"}


def _copy_model(name: str, out: str | Path, seed: int = 0) -> Path:
    expected = {rel: d for rel, d in manifest.read_manifest().items() if rel.startswith(f"models/{name}/")}
    actual = {rel: d for rel, d in manifest.digests().items() if rel.startswith(f"models/{name}/")}
    problems = manifest.differences(expected, actual)
    if not expected or problems:
        raise ReleaseError(f"zoo model {name} does not match release/zoo/SHA256SUMS "
                           f"({'; '.join(problems) or 'absent'}): restore it (git checkout release/zoo) or retrain "
                           "with make zoo")
    out = Path(out)
    shutil.copytree(manifest.ZOO_DIR / "models" / name, out, dirs_exist_ok=True)
    return out


def zoo_parent_writers(method: str, base: bool = False) -> dict[str, Callable[..., Path]]:
    """`base`: the config names a common ancestor (`base:`); the zoo's is the specialists' own base."""
    roles = dict(CROSS_ARCH if method == "ffn_blend" else SAME_ARCH)
    if base:
        roles["base"] = "base"
    return {role: partial(_copy_model, name) for role, name in roles.items()}
