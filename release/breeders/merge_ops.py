"""Weight-space merge operators for two parents of one architecture, one tensor at a time.

Every operator takes the father's tensor `a`, the mother's `b` (same shape) and the ratio `t` of the
mother, computes in float32 (float64 stays float64) and returns the child's tensor in that work dtype.
`t = 0` gives `a` exactly; `t = 1` gives `b` exactly (with `density = 1` for TIES and DARE): the blends
go through `torch.lerp`, which is exact at both ends. Two parents means one task vector,
`delta = b - a`, with the father as the base model; with a common ancestor (`base`), TIES and DARE-TIES
merge the two task vectors `a - base` and `b - base` instead (`over_base`, as mergekit's `base_model`).

- linear: `(1 - t) * a + t * b`. Model soups, Wortsman et al. 2022, https://arxiv.org/abs/2203.05482
  (mergekit `linear` with weights `1 - t`, `t`).
- slerp: spherical interpolation between `a` and `b` viewed as two vectors (one angle per tensor),
  falling back to linear when they are nearly colinear (|cos| > 0.9995). Shoemake, "Animating rotation
  with quaternion curves", SIGGRAPH 1985, https://doi.org/10.1145/325165.325242; as mergekit's `slerp`.
- ties: TIES-Merging, Yadav et al. 2023, https://arxiv.org/abs/2306.01708: trim the task vector to its
  `density` largest-magnitude entries (exactly k = max(1, int(density * n)), ties at the cut broken as
  mergekit breaks them: `magnitude_keep`), elect the sign by the summed task
  vectors, merge only the entries that agree. With a single task vector the elected sign is its own, so
  the child is `a + t * trim(delta)` (mergekit `ties` with `weight = t`, `density`, `normalize: false`;
  with `normalize: true` and one model the weight would cancel out and `t` would mean nothing).
- dare_ties: DARE, Yu et al. 2023, "Language Models are Super Mario", https://arxiv.org/abs/2311.03099:
  drop each task-vector entry with probability `p = 1 - density` and rescale the survivors by
  `1 / (1 - p) = 1 / density`, then TIES' sign election (again trivial for one task vector):
  `a + t * mask * delta / density`. The paper's rescale (`rescale="inverse_density"`, the default);
  `rescale="l1"` rescales to the L1 norm of the task vector instead, as mergekit 0.1.5 does by default
  (equal in expectation). The mask is a pure function of (seed, tensor name,
  element index) computed with integer arithmetic, so it is the same on every device and in every run:
  one genome always gives the same child.
"""

from __future__ import annotations

import hashlib

import torch

METHODS = ("linear", "slerp", "ties", "dare_ties")
PAPERS = {
    "linear": {"title": "Model soups (Wortsman et al., 2022)", "url": "https://arxiv.org/abs/2203.05482"},
    "slerp": {"title": "Spherical linear interpolation (Shoemake, 1985)",
              "url": "https://doi.org/10.1145/325165.325242"},
    "ties": {"title": "TIES-Merging: Resolving Interference When Merging Models (Yadav et al., 2023)",
             "url": "https://arxiv.org/abs/2306.01708"},
    "dare_ties": {"title": "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a "
                           "Free Lunch (DARE, Yu et al., 2023)", "url": "https://arxiv.org/abs/2311.03099"},
}
# For the card: what each method does to one tensor, in words.
FORMULAS = {
    "linear": "`child = (1 - t) * father + t * mother`.",
    "slerp": "`child` = spherical interpolation from father to mother at `t`, the two tensors seen as vectors "
             "(linear when they are nearly colinear).",
    "ties": "`child = father + t * trim(delta)`: only the largest-magnitude fraction `density` of `delta` is kept.",
    "dare_ties": "`child = father + t * scale * mask * delta`: a seeded random `mask` keeps each entry of "
                 "`delta` with probability `density`, the survivors rescaled by `scale`.",
}
SLERP_DOT_THRESHOLD = 0.9995
_EPS = 1e-8
_M32 = 0xFFFFFFFF
NOISE_LEVELS = 1 << 16  # DARE's keep probability is resolved to 1/65536
DARE_RESCALES = ("inverse_density", "l1")
_L1_EPS = 1e-7  # mergekit's: below it a norm is not rescaled to


def work(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def linear(a: torch.Tensor, b: torch.Tensor, t: float, out: torch.Tensor | None = None) -> torch.Tensor:
    return _masked_lerp(work(a), work(b), t, None, out)


def slerp_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos of the angle between `a` and `b` as flat vectors (depends only on the parents: cache it)."""
    a, b = work(a).flatten(), work(b).flatten()
    na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    na = torch.where(na > _EPS, na, 1)
    nb = torch.where(nb > _EPS, nb, 1)
    return float(((a / na) * (b / nb)).sum().clamp(-1, 1))


def slerp_coefficients(cosine: float, t: float) -> tuple[float, float]:
    """(weight of a, weight of b)."""
    if abs(cosine) > SLERP_DOT_THRESHOLD:
        return 1.0 - t, t
    theta = torch.acos(torch.tensor(cosine, dtype=torch.float64))
    s = torch.sin(theta)
    return float(torch.sin((1 - t) * theta) / s), float(torch.sin(t * theta) / s)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, cosine: float | None = None,
          out: torch.Tensor | None = None) -> torch.Tensor:
    cosine = slerp_cosine(a, b) if cosine is None else cosine
    ca, cb = slerp_coefficients(cosine, t)
    a, b = work(a), work(b)
    if cb == 0.0:
        return a.clone() if out is None else out.copy_(a)  # t = 0: the father exactly
    if ca == 0.0:
        return b.clone() if out is None else out.copy_(b)  # t = 1: the mother exactly
    return torch.mul(a, ca, out=out).add_(b, alpha=cb) if out is not None else torch.mul(a, ca).add_(b, alpha=cb)


def magnitude_keep(delta: torch.Tensor, density: float) -> torch.Tensor | None:
    """TIES' trim: which entries of the task vector `delta` are kept at `density` (None: every entry).

    Exactly k = max(1, int(density * n)) entries, those of largest |delta|, as mergekit's `magnitude`. When
    several entries tie at the cut (common with bf16 parents: their differences take few distinct values)
    the first k of `torch.argsort(|delta|, descending=True)` on the CPU are kept, the order mergekit's own
    CPU merge uses, so mergekit reproduces the child; computed on the CPU on every device, so a GPU live
    model and the emitted child agree. Without such ties the k largest are one set, found in O(n).
    """
    n = delta.numel()
    if density >= 1 or n == 0:
        return None
    if density <= 0:
        return torch.zeros_like(delta, dtype=torch.bool)
    k = max(1, int(density * n))
    size = work(delta).abs().flatten()
    cut = torch.kthvalue(size, n - k + 1).values
    above = size > cut
    if int(above.sum()) + int((size == cut).sum()) == k:  # no tie across the cut: the k largest, whole
        return above.logical_or_(size == cut).reshape(delta.shape)
    order = torch.argsort(size.cpu(), descending=True)[:k].to(delta.device)
    return torch.zeros(n, dtype=torch.bool, device=delta.device).index_fill_(0, order, True).reshape(delta.shape)


def _masked_lerp(a, b, w: float, keep: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
    """where(keep, lerp(a, b, w), a), into `out` when given (same arithmetic either way)."""
    merged = torch.lerp(a, b, w, out=out) if out is not None else torch.lerp(a, b, w)
    if keep is None:
        return merged
    return torch.where(keep, merged, a, out=merged)


def ties(a: torch.Tensor, b: torch.Tensor, t: float, density: float, out: torch.Tensor | None = None) -> torch.Tensor:
    a, b = work(a), work(b)
    keep = magnitude_keep(b - a, density)
    return _masked_lerp(a, b, t, keep, out)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' lowbias32), exact in int64 on every device."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def tensor_salt(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def dare_noise(shape, seed: int, name: str, device="cpu", dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """Per-element uniform integers in [0, 65536) from (seed, tensor name, index).

    `dtype` is only how they are kept: int32; int16 shifted by -32768 (2 bytes per parameter, what a GPU
    live model keeps); float32 (exact integers, what a CPU live model keeps: CPU float kernels are several
    times faster than its integer-to-float conversion). Every form gives the same masks.
    """
    n = 1
    for d in shape:
        n *= d
    idx = torch.arange(n, dtype=torch.int64, device=device)
    x = _mix((idx & _M32) ^ tensor_salt(seed, name))
    x = _mix(x ^ (idx >> 32))  # tensors past 2**32 elements (per-layer embeddings) stay distinct
    x = (x >> 16).reshape(shape)
    if dtype == torch.int16:
        return (x - NOISE_LEVELS // 2).to(torch.int16)
    return x.to(dtype)


def _threshold(density: float) -> int:
    return round(density * NOISE_LEVELS)


def dare_keep(noise: torch.Tensor, density: float) -> torch.Tensor:
    """Keep mask at `density` (bool): each entry survives with probability `density`; masks nest as it grows."""
    if noise.dtype == torch.int16:
        return noise.to(torch.int32) + NOISE_LEVELS // 2 < _threshold(density)
    return noise < _threshold(density)


def dare_keep_weights(noise: torch.Tensor, density: float, dtype: torch.dtype,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """The keep mask as 0/1 numbers of `dtype`, in one comparison pass written straight as numbers (into
    `out` when given: a live switch then allocates nothing). CPU kernels that read or write boolean tensors
    (torch.where, bool * float) are several times slower than this."""
    threshold = _threshold(density)
    if out is None:
        out = torch.empty(noise.shape, dtype=dtype, device=noise.device)
    if threshold <= 0 or threshold >= NOISE_LEVELS:  # none kept, or all: int16 noise cannot hold those levels
        return out.fill_(0.0 if threshold <= 0 else 1.0)
    return torch.lt(noise, threshold - (NOISE_LEVELS // 2 if noise.dtype == torch.int16 else 0), out=out)


def task_vector_l1(delta: torch.Tensor) -> float:
    return float(delta.abs().sum(dtype=torch.float64))


def l1_scale(delta: torch.Tensor, keep: torch.Tensor, l1: float | None) -> float:
    """mergekit's default DARE rescale: the task vector's L1 norm `l1` over the survivors' (float64 sums; 1 when
    either is ~0, as mergekit)."""
    l1 = task_vector_l1(delta) if l1 is None else l1
    kept = float(torch.mul(delta.abs(), keep).sum(dtype=torch.float64))
    return 1.0 if l1 < _L1_EPS or kept < _L1_EPS else l1 / kept


def dare_ties(a: torch.Tensor, b: torch.Tensor, t: float, density: float, seed: int, name: str,
              noise: torch.Tensor | None = None, out: torch.Tensor | None = None, delta: torch.Tensor | None = None,
              rescale: str = "inverse_density", l1: float | None = None) -> torch.Tensor:
    """`delta` (b - a) and `l1` (its L1 norm): what a live model keeps between switches, so that one costs two
    passes over its tensor: the mask written into `out`, then `out = a + alpha * out * delta` (the same
    result without them, or without `out`)."""
    if rescale not in DARE_RESCALES:
        raise ValueError(f"unknown DARE rescale {rescale!r}: one of {', '.join(DARE_RESCALES)}")
    a, b = work(a), work(b)
    if density >= 1:
        return _masked_lerp(a, b, t, None, out)
    if density <= 0:
        return a.clone() if out is None else out.copy_(a)
    noise = dare_noise(a.shape, seed, name, a.device) if noise is None else noise
    delta = torch.sub(b, a) if delta is None else delta
    keep = dare_keep_weights(noise, density, a.dtype, out)
    # a + t * scale * keep * delta: dropped entries stay the father's, survivors carry their rescaled task vector
    alpha = t / density if rescale == "inverse_density" else t * l1_scale(delta, keep, l1)
    return torch.addcmul(a, keep, delta, value=alpha, out=keep)  # elementwise: the mask's room takes the child


def sign_elected_sum(deltas: list[torch.Tensor]) -> torch.Tensor:
    """TIES' sign election over weighted task vectors: each entry's sign is the sign of their sum (>= 0: +),
    and only the entries that agree with it are summed (mergekit's `get_mask(method="sum")`, same arithmetic)."""
    stacked = torch.stack(deltas)
    majority = (stacked.sum(dim=0) >= 0).to(stacked.dtype) * 2 - 1
    return (stacked * (stacked.sign() == majority)).sum(dim=0)


def _dare_vector(delta: torch.Tensor, density: float, seed: int, name: str, rescale: str) -> torch.Tensor:
    keep = dare_keep_weights(dare_noise(delta.shape, seed, name, delta.device), density, delta.dtype)
    scale = 1.0 / density if rescale == "inverse_density" else l1_scale(delta, keep, None)
    return delta * keep * scale


def over_base(method: str, base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, t: float, density: float,
              seed: int = 0, name: str = "", rescale: str = "inverse_density") -> torch.Tensor:
    """TIES or DARE-TIES of two siblings over their common ancestor `base`, as mergekit's `base_model`:
    task vectors a - base and b - base, each trimmed (TIES: its own `density` largest; DARE: its own seeded
    mask, the father's salted apart from the mother's, rescaled), weighted 1 - t and t, signs elected,
    added to the base. Share 0 is `a` exactly and share 1 `b` (whole parents, as without a base)."""
    base, a, b = work(base), work(a), work(b)
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    deltas = []
    for parent, weight, role in ((a, 1.0 - t, "father"), (b, t, "mother")):
        delta = parent - base
        if method == "ties":
            keep = magnitude_keep(delta, density)
            delta = delta if keep is None else delta * keep
        elif density < 1:
            delta = _dare_vector(delta, density, seed, name if role == "mother" else f"{name}#father", rescale)
        deltas.append(delta * weight)
    return base + sign_elected_sum(deltas)


def merge(method: str, a: torch.Tensor, b: torch.Tensor, t: float, density: float = 1.0, seed: int = 0,
          name: str = "", cosine: float | None = None, noise: torch.Tensor | None = None,
          out: torch.Tensor | None = None, rescale: str = "inverse_density", base: torch.Tensor | None = None,
          **dare) -> torch.Tensor:
    """The child's tensor for one method (the one entry point the breeder and the emitter share).

    `out`: a tensor of the work dtype to write the result into, in place (the live model's own); the
    arithmetic is the same as without it, so the live model and the emitted child agree bit for bit.
    `dare`: what a live model keeps for dare_ties between switches (`delta`, `l1`), same result.
    `base`: the common ancestor's tensor; TIES and DARE-TIES then merge over it (`over_base`), linear and
    slerp need none and ignore it.
    """
    if base is not None and method in ("ties", "dare_ties"):
        merged = over_base(method, base, a, b, t, density, seed, name, rescale)
        return merged if out is None else out.copy_(merged)
    if out is not None and out.dtype != work(a).dtype:
        raise ValueError(f"out must have the work dtype {work(a).dtype}, not {out.dtype}")
    if method == "linear":
        return linear(a, b, t, out)
    if method == "slerp":
        return slerp(a, b, t, cosine, out)
    if method == "ties":
        return ties(a, b, t, density, out)
    if method == "dare_ties":
        return dare_ties(a, b, t, density, seed, name, noise, out, rescale=rescale, **dare)
    raise ValueError(f"unknown merge method {method!r}: one of {', '.join(METHODS)}")
