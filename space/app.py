"""Chat with a Darwin child model: the app of its Hugging Face Space.

The Space variable MODEL_ID names the model repo (MODEL_REVISION optionally pins a revision); EXAMPLES, a
JSON list of prompts, fills the example buttons; GPU_TOKENS_PER_SECOND is the first estimate of the
generation speed that sizes each ZeroGPU slot (then measured on every reply). This file runs alone on the
Space, so it imports only spaces, gradio, transformers, torch, huggingface_hub and the stdlib.
"""

try:  # ZeroGPU lends a GPU per call; `spaces` must be imported before torch initialises CUDA
    import spaces
except ImportError:  # elsewhere (local serving, tests) the decorator does nothing
    spaces = None

import json
import logging
import math
import os
import queue
import threading
import time

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

log = logging.getLogger(__name__)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STREAM_TIMEOUT_S = 120  # no new text for this long means generation is stuck: end the reply
MAX_NEW_TOKENS = 2048  # the slider's top
QUEUE_SIZE = 16  # requests waiting beyond this are turned away at once instead of queueing for minutes
# A ZeroGPU slot: prompt, load and stream overhead, then max_new_tokens at the measured speed with a margin;
# never below ZeroGPU's 60 s default, never above what one call may hold.
GPU_OVERHEAD_S, GPU_MARGIN, GPU_MIN_S, GPU_MAX_S = 10.0, 1.5, 60, 300


class Throughput:
    """Tokens per second of this Space's generation: a first estimate, then the latest replies' measure."""

    def __init__(self, estimate: float):
        self.rate = max(float(estimate), 0.1)
        self.lock = threading.Lock()

    def record(self, tokens: int, seconds: float) -> None:
        if tokens < 8 or seconds <= 0:  # too short to say anything about the decoding speed
            return
        with self.lock:  # an average that follows the hardware the slots actually get
            self.rate = 0.5 * self.rate + 0.5 * tokens / seconds

    def gpu_seconds(self, max_new_tokens) -> int:
        need = GPU_OVERHEAD_S + GPU_MARGIN * int(max_new_tokens) / self.rate
        return int(min(max(math.ceil(need), GPU_MIN_S), GPU_MAX_S))


def examples_from(text: str | None) -> list[str]:
    """EXAMPLES (a JSON list of prompts) as a list; anything else is no examples, not a crash."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        log.warning("EXAMPLES is not a JSON list of prompts: no examples shown")
        return []
    return [str(v) for v in value if str(v).strip()] if isinstance(value, list) else []


class StopOnEvent(StoppingCriteria):
    """Ends `generate` as soon as the event is set (Stop pressed, page closed); counts the tokens made."""

    def __init__(self, event: threading.Event):
        self.event = event
        self.steps = 0

    def __call__(self, input_ids, scores, **kwargs):
        self.steps += 1
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


def build_demo(model_id: str, revision: str | None = None, examples: list[str] | None = None,
               tokens_per_second: float = 20.0) -> gr.Blocks:
    model, tokenizer, error = load(model_id, revision)
    speed = Throughput(tokens_per_second)

    def gpu_duration(message, history, system_prompt, max_new_tokens, temperature):
        return speed.gpu_seconds(max_new_tokens)

    gpu = spaces.GPU(duration=gpu_duration) if spaces else (lambda fn: fn)

    @gpu
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
        steps = StopOnEvent(stop)

        def generate():
            started = time.monotonic()
            try:
                model.generate(**inputs, streamer=streamer, max_new_tokens=int(max_new_tokens),
                               stopping_criteria=StoppingCriteriaList([steps]), **sampling)
                speed.record(steps.steps, time.monotonic() - started)
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
                gr.Slider(1, MAX_NEW_TOKENS, value=256, step=1, label="Max new tokens", render=False),
                gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0 = greedy)", render=False),
            ],
            additional_inputs_accordion=gr.Accordion("Generation settings", open=False, render=False),
            examples=[[text] for text in examples] if examples else None,
            cache_examples=False,  # an example runs the model when clicked, never at startup
            fill_height=True,
        )
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)  # one generation at a time per replica
    return demo


demo = build_demo(os.environ.get("MODEL_ID", ""), os.environ.get("MODEL_REVISION") or None,
                  examples=examples_from(os.environ.get("EXAMPLES")),
                  tokens_per_second=float(os.environ.get("GPU_TOKENS_PER_SECOND") or 20.0))

if __name__ == "__main__":
    demo.launch()
