"""Chat with a Darwin child model: the app of its Hugging Face Space.

The Space variable MODEL_ID names the model repo (MODEL_REVISION optionally pins a revision). This file
runs alone on the Space, so it imports only gradio, transformers, torch, huggingface_hub and the stdlib.
"""

import json
import logging
import os
import queue
import threading

import gradio as gr
import torch
from huggingface_hub import constants, hf_hub_download
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

try:  # ZeroGPU Spaces lend a GPU per call; elsewhere the decorator does nothing
    from spaces import GPU
except ImportError:
    def GPU(fn):
        return fn

log = logging.getLogger(__name__)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STREAM_TIMEOUT_S = 120  # no new text for this long means generation is stuck: end the reply


class StopOnEvent(StoppingCriteria):
    """Ends `generate` as soon as the event is set (Stop pressed, page closed)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def load(model_id: str, revision: str | None):
    """(model, tokenizer, None) or (None, None, one-line reason): a bad MODEL_ID must not crash the Space."""
    if not model_id:
        return None, None, "the MODEL_ID variable is not set; add it in the Space settings"
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=True)
        dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(
            model_id, revision=revision, trust_remote_code=True, dtype=dtype
        ).to(DEVICE).eval()
        return model, tokenizer, None
    except Exception as e:  # noqa: BLE001 - any failure becomes a message on the page
        log.exception("could not load %s", model_id)
        reason = (str(e).strip().splitlines() or [""])[0]
        return None, None, f"{type(e).__name__}: {reason}"


def fetch(model_id: str, revision: str | None, filename: str) -> str | None:
    """A file of the model repo, or None when it is absent (stock models have no genome)."""
    if os.path.isdir(model_id):  # a local checkpoint folder, when serving a child before pushing it
        path = os.path.join(model_id, filename)
        return path if os.path.isfile(path) else None
    try:
        return hf_hub_download(model_id, filename, revision=revision)
    except Exception:  # noqa: BLE001
        return None


def read_genome(path: str | None) -> dict | None:
    try:
        return json.loads(open(path, encoding="utf-8").read()) if path else None
    except (OSError, ValueError):
        return None


def header(model_id: str, revision: str | None, error: str | None) -> str:
    if error:
        return (f"# {model_id or 'No model'}\n\n**Model {model_id or '(unset)'} could not be loaded:** {error}\n\n"
                "Set the Space variable `MODEL_ID` to a model repo that `AutoModelForCausalLM` loads (and "
                "`MODEL_REVISION`, if set, to one of its revisions), then restart the Space.")
    link = lambda repo: f"`{repo}`" if os.path.isdir(repo) else f"[{repo}]({constants.ENDPOINT}/{repo})"  # noqa: E731
    lines = [f"# {model_id.split('/')[-1]}", f"Chat with {link(model_id)}" + (f" at `{revision}`." if revision else ".")]
    genome = read_genome(fetch(model_id, revision, "darwin_genome.json"))
    if genome:
        ratios = genome.get("ratios") or []
        father, mother = (genome.get(role, {}).get("repo", "?") for role in ("father", "mother"))
        lines.append(f"Father {link(father)} × mother {link(mother)}.")
        if isinstance(ratios, dict):  # a same-architecture weight merge: shares per component
            mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
            lines.append(f"Method `{genome.get('method', '?')}`: mean mother share attention "
                         f"{mean(ratios.get('attn', [])):.3f}, FFN {mean(ratios.get('ffn', [])):.3f}, embeddings "
                         f"and norms {mean(ratios.get('norms', [])):.3f}"
                         + (f", density {genome['density']:.3f}." if genome.get("density") is not None else "."))
        elif ratios:
            blended = sum(r > 0 for r in ratios)
            lines.append(f"Genome: {blended} of {len(ratios)} father FFNs blended with the mother's "
                         f"(mean ratio {sum(ratios) / len(ratios):.3f}, max {max(ratios):.3f}).")
            # r = 0: the father's FFN alone, r = 1: the mother's alone (a transplanted layer), else both.
            kinds = genome.get("layer_kinds") or ["father" if r == 0 else "mother" if r == 1 else "blend"
                                                  for r in ratios]
            lines.append(f"Layers: {kinds.count('father')} father FFN · {kinds.count('mother')} mother FFN · "
                         f"{kinds.count('blend')} blend.")
    return "\n\n".join(lines)


def text_of(content) -> str:
    """Message content as plain text (gradio gives a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(p if isinstance(p, str) else p.get("text", "") for p in parts if isinstance(p, (str, dict)))


def build_demo(model_id: str, revision: str | None = None) -> gr.Blocks:
    model, tokenizer, error = load(model_id, revision)

    @GPU
    def chat(message, history, system_prompt, max_new_tokens, temperature):
        if error:
            yield f"Model {model_id or '(unset)'} could not be loaded: {error}"
            return
        messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
        messages += [{"role": m["role"], "content": text_of(m["content"])} for m in history]
        messages.append({"role": "user", "content": message})
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(DEVICE)
        stop = threading.Event()
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=STREAM_TIMEOUT_S)
        sampling = dict(do_sample=True, temperature=float(temperature)) if temperature > 0 else dict(do_sample=False)
        failures = []

        def generate():
            try:
                model.generate(**inputs, streamer=streamer, max_new_tokens=int(max_new_tokens),
                               stopping_criteria=StoppingCriteriaList([StopOnEvent(stop)]), **sampling)
            except Exception as e:  # noqa: BLE001 - reported in the chat instead of a silent timeout
                log.exception("generation failed")
                failures.append(f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
                streamer.end()

        worker = threading.Thread(target=generate, name="darwin-generate", daemon=True)
        worker.start()
        reply = ""
        try:
            for piece in streamer:
                reply += piece
                yield reply
        except queue.Empty:
            yield reply + f"\n\n(stopped: no output for {STREAM_TIMEOUT_S} s)"
        else:
            if failures:
                yield reply + f"\n\n(generation failed: {failures[0]})"
            elif not reply:
                yield "(the model ended its reply without any text)"
        finally:
            stop.set()  # runs when gradio closes this generator on Stop, so generate ends too
            worker.join(timeout=STREAM_TIMEOUT_S)

    with gr.Blocks(title=model_id or "Darwin chat") as demo:
        gr.Markdown(header(model_id, revision, error), elem_id="model-header")
        chart = None if error else fetch(model_id, revision, "genome.png")
        if chart:
            gr.Image(chart, label="Genome: blend ratio per layer", buttons=["fullscreen"], height=240)
        gr.ChatInterface(
            chat,
            api_name="chat",
            additional_inputs=[  # render=False: shown in the accordion under the chat, not above it
                gr.Textbox("", label="System prompt", render=False),
                gr.Slider(1, 2048, value=256, step=1, label="Max new tokens", render=False),
                gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0 = greedy)", render=False),
            ],
            additional_inputs_accordion=gr.Accordion("Generation settings", open=False, render=False),
            fill_height=True,
        )
    return demo


demo = build_demo(os.environ.get("MODEL_ID", ""), os.environ.get("MODEL_REVISION") or None)

if __name__ == "__main__":
    demo.launch()
