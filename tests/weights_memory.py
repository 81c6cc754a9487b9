"""How much model weight a check holds at once: the bytes of every nn.Parameter alive, read whenever a whole
model runs its forward (the health and MRI streaming tests)."""

import contextlib
import gc

import torch
from safetensors.torch import load_file

MODEL_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration")


def live_bytes() -> tuple[int, int]:
    """(weights, tensors): the bytes of every model weight (nn.Parameter) alive in the process, and of every
    tensor (weights, buffers, kept activations), each storage once (tied weights share). One pass over the
    objects the garbage collector tracks; `issubclass` on the type, as isinstance would call Parameter's
    slow __instancecheck__ on every object."""
    weights, tensors = {}, {}
    for obj in gc.get_objects():
        kind = type(obj)
        if issubclass(kind, torch.Tensor) and obj.device.type != "meta":
            storage = obj.untyped_storage()
            tensors[storage.data_ptr()] = storage.nbytes()
            if issubclass(kind, torch.nn.Parameter):
                weights[storage.data_ptr()] = storage.nbytes()
    return sum(weights.values()), sum(tensors.values())


def live_weight_bytes() -> int:
    """Bytes of every model weight alive. Activations are left out: at tiny width the probe's kept activations
    weigh as much as the weights."""
    return live_bytes()[0]


def live_tensor_bytes() -> int:
    return live_bytes()[1]


@contextlib.contextmanager
def weights_held(suffixes: tuple[str, ...] = MODEL_SUFFIXES, tensors: bool = False):
    """Yields a dict whose "peak" is, once the block ends, the most weight bytes alive above the baseline
    (those alive on entry) whenever a module whose class name ends with one of `suffixes` (a whole model, by
    default) ran a forward; "weights" likewise the weights alone. With `tensors`, "peak" counts every tensor
    (weights, buffers, kept activations), else the weights alone."""
    seen = {"peak": 0, "weights": 0, "forwards": 0}
    baseline = live_bytes()

    def measure(module, args):
        if module.__class__.__name__.endswith(suffixes):  # a whole model's forward, not its submodules
            seen["forwards"] += 1
            now = live_bytes()
            seen["weights"] = max(seen["weights"], now[0] - baseline[0])
            seen["peak"] = max(seen["peak"], now[1] - baseline[1] if tensors else seen["weights"])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(measure)
    try:
        yield seen
    finally:
        handle.remove()


def fp32_weight_bytes(folder, text_only: bool = False) -> int:
    """A checkpoint's weights in fp32, the dtype the checks run in (`text_only`: a parent's text model and LM
    head, what the checks load of it)."""
    return sum(t.numel() * 4 for shard in folder.glob("*.safetensors") for key, t in load_file(shard).items()
               if not text_only or key.startswith(("model.language_model.", "lm_head.")))
