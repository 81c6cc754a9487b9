"""How much model weight a check holds at once: the bytes of every nn.Parameter alive, read whenever a whole
model runs its forward (the health and MRI streaming tests)."""

import contextlib
import gc

import torch
from safetensors.torch import load_file

MODEL_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration")


def live_weight_bytes() -> int:
    """Bytes of every model weight (nn.Parameter) alive in the process, each storage once (tied weights share).
    Activations are left out: at tiny width the probe's kept activations weigh as much as the weights."""
    storages = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.nn.Parameter) and obj.device.type != "meta":
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


@contextlib.contextmanager
def weights_held(suffixes: tuple[str, ...] = MODEL_SUFFIXES):
    """Yields a dict whose "peak" is, once the block ends, the most weight bytes alive above the baseline
    (those alive on entry) whenever a module whose class name ends with one of `suffixes` (a whole model, by
    default) ran a forward."""
    seen = {"peak": 0, "forwards": 0}
    baseline = live_weight_bytes()

    def measure(module, args):
        if module.__class__.__name__.endswith(suffixes):  # a whole model's forward, not its submodules
            seen["forwards"] += 1
            seen["peak"] = max(seen["peak"], live_weight_bytes() - baseline)

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
