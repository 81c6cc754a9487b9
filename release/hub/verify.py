"""Verify a release: the child pushed to the Hub loads with trust_remote_code, matches the emitted folder
logit for logit, and chats."""

from __future__ import annotations

import logging
from pathlib import Path

from release.errors import ReleaseError

log = logging.getLogger(__name__)

PROMPT = "Hello! In one sentence, who are you?"


def verify_child(repo: str, revision: str, emitted: Path, device: str = "cpu", dtype=None, hub=None,
                 trust_remote_code: bool = True) -> dict:
    """`trust_remote_code=False` for a stock child (same-architecture breeders): it must load without it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from release.hub.client import Hub  # huggingface_hub reads HF_ENDPOINT when first imported

    # Download every file of the pushed commit, each checked against its Hub id (a damaged stored copy
    # fails here, by name), then load from that snapshot: exactly the Hub's files, no further requests.
    hub = hub or Hub()
    pushed = hub.pull(repo, revision, allow_patterns=("*",), action="verify",
                      damaged_fix="push again with --force push, then verify again").path
    dtype = dtype or torch.float32
    load = dict(trust_remote_code=trust_remote_code, dtype=dtype)
    remote = AutoModelForCausalLM.from_pretrained(pushed, **load).to(device).eval()
    tok = AutoTokenizer.from_pretrained(pushed, trust_remote_code=trust_remote_code)
    inputs = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True).to(device)
    with torch.no_grad():
        pushed_logits = remote(**inputs).logits.float().cpu()
        reply_ids = remote.generate(**inputs, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    del remote  # the two copies are never in memory together
    local = AutoModelForCausalLM.from_pretrained(emitted, **load).to(device).eval()
    with torch.no_grad():
        local_logits = local(**inputs).logits.float().cpu()
    diff = (pushed_logits - local_logits).abs().max().item()
    # Same weights, same code: on CPU in fp32 the logits must be identical. GPU kernels may pick other
    # reduction orders between two loads, so there a bf16-sized difference with the same argmax passes.
    exact = torch.device(device).type == "cpu"
    same_choice = torch.equal(pushed_logits.argmax(-1), local_logits.argmax(-1))
    if (exact and diff != 0.0) or (not exact and (diff > 0.05 or not same_choice)):
        raise ReleaseError(f"verify: {repo}@{revision[:12]} gives logits that differ from the emitted child by "
                           f"{diff:.3g}; push again with --force push")
    reply = tok.decode(reply_ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    if not reply.strip():
        raise ReleaseError(f"verify: {repo}@{revision[:12]} generated an empty reply to a chat prompt")
    log.info("verified %s@%s: logits identical, reply %r", repo, revision, reply)
    return {"repo": repo, "revision": revision, "max_abs_logit_diff": diff, "prompt": PROMPT, "reply": reply}
