"""The Space: its folder, its deployment to the local hub, and the app served with a real gradio + client."""

from tests.localhub_fixtures import TOKEN, free_port, repo_name  # first: sets HF_ENDPOINT

# isort: split
import ast
import json
import sys
import threading
import time
from pathlib import Path

import gradio
import pytest
import torch
import transformers
from gradio_client import Client
from huggingface_hub import HfApi, SpaceCard

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.hub.client import Hub
from release.hub.space import (
    APP_DIR,
    SPACE_FILES,
    load_app,
    prepare_space_folder,
    serve_last_release,
    short_description,
    space_variables,
)

FIXTURES = Path(__file__).parent / "fixtures" / "card"
GENOME = json.loads((FIXTURES / "genome.json").read_text())
LONG_DESCRIPTION = ("A child of Gemma 4 and Qwen3.5 bred by CMA-ES: the father's attention is kept and "
                    "every FFN is blended with the mother's at a searched ratio. # not: a YAML comment")


def _config(**space) -> ReleaseConfig:
    return ReleaseConfig.model_validate(dict(
        name="Darwin-Tiny", father={"repo": "darwin-local/father"}, mother={"repo": "darwin-local/mother"},
        child={"repo": "darwin-local/child"}, fitness={"kind": "calibration"},
        card={"license": "apache-2.0", "description": LONG_DESCRIPTION}, space=space or None,
    ))


def _generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "darwin-generate" and t.is_alive()]


def _wait_no_generation(timeout_s: float) -> float:
    start = time.monotonic()
    while _generate_threads() and time.monotonic() - start < timeout_s:
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def child_repo(space_child_repo):
    return space_child_repo


@pytest.fixture(scope="module")
def app():
    return load_app()


@pytest.fixture(scope="module")
def served(app, child_repo):
    demo = app.build_demo(child_repo)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(served):
    return Client(served[1], verbose=False)


# --- the Space folder -------------------------------------------------------------------------------


def test_short_description_fits_the_hub_limit():
    assert short_description("Chat with Darwin") == "Chat with Darwin"
    cut = short_description(LONG_DESCRIPTION)
    assert len(cut) <= 60 and cut.endswith("…")
    assert LONG_DESCRIPTION.startswith(cut[:-1])
    assert LONG_DESCRIPTION[len(cut) - 1] == " "  # cut at a word boundary
    assert short_description("x" * 100) == "x" * 59 + "…"
    assert short_description("two\nlines  here") == "two lines here"


def test_prepare_space_folder_writes_exactly_app_requirements_and_readme(tmp_path):
    out = tmp_path / "space"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    folder = prepare_space_folder(_config(repo="darwin-local/chat"), out)

    assert folder == out
    assert sorted(p.name for p in out.iterdir()) == sorted(SPACE_FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["space"]  # no staging folder left behind
    assert (out / "app.py").read_bytes() == (APP_DIR / "app.py").read_bytes()
    card = SpaceCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data == {
        "title": "child", "emoji": "🧬", "colorFrom": "blue", "colorTo": "green", "sdk": "gradio",
        "sdk_version": gradio.__version__, "app_file": "app.py",
        "models": ["darwin-local/child", "darwin-local/father", "darwin-local/mother"],
        "license": "apache-2.0", "short_description": short_description(LONG_DESCRIPTION), "pinned": False,
        "preload_from_hub": ["darwin-local/child"],
    }
    assert len(data["short_description"]) <= 60
    assert 'Client("darwin-local/chat")' in card.text and 'api_name="/chat"' in card.text
    assert f"gradio=={gradio.__version__}" in card.text


def test_space_front_matter_suggests_the_hardware_preloads_the_child_and_links_all_three_models(tmp_path):
    from huggingface_hub import SpaceHardware

    config = _config(repo="FINAL-Bench/Darwin-4B-Genesis-chat", hardware="zero-a10g",
                     examples=["안녕하세요! 자기소개를 해 주세요.", "Explain the blend in one sentence."])
    config = config.model_copy(update={"child": config.child.model_copy(update={"repo": "FINAL-Bench/Darwin-4B-Genesis"})})
    card = SpaceCard.load(prepare_space_folder(config, tmp_path / "space") / "README.md")
    assert card.data.title == "Darwin-4B-Genesis"
    assert card.data.suggested_hardware == "zero-a10g" in {h.value for h in SpaceHardware}
    assert card.data.preload_from_hub == ["FINAL-Bench/Darwin-4B-Genesis"]
    assert card.data.models == ["FINAL-Bench/Darwin-4B-Genesis", "darwin-local/father", "darwin-local/mother"]
    # The examples travel as a Space variable (JSON, Korean kept as it is), beside the child and its commit.
    variables = space_variables(config, "a" * 40)
    assert variables["MODEL_ID"] == "FINAL-Bench/Darwin-4B-Genesis" and variables["MODEL_REVISION"] == "a" * 40
    assert json.loads(variables["EXAMPLES"]) == config.space.examples and "안녕하세요" in variables["EXAMPLES"]
    assert "EXAMPLES" not in space_variables(_config(repo="darwin-local/chat"), None)


def test_app_imports_spaces_before_anything_else():
    """ZeroGPU patches torch when `spaces` is imported: it must come before torch (and everything else)."""
    tree = ast.parse((APP_DIR / "app.py").read_text())
    first = next(node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.Try)))
    assert isinstance(first, ast.Try) and isinstance(first.body[0], ast.Import)
    assert first.body[0].names[0].name == "spaces"


def test_gpu_slot_follows_max_new_tokens_and_the_measured_speed(app):
    speed = app.Throughput(20.0)
    assert speed.gpu_seconds(64) == 60  # ZeroGPU's default slot is the floor
    assert speed.gpu_seconds(2048) == 164  # 10 s + 1.5 x 2048 tokens / 20 tokens/s
    speed.record(400, 10.0)  # replies measured at 40 tokens/s: the estimate follows
    assert speed.rate == 30.0 and speed.gpu_seconds(2048) == 113
    speed.record(3, 0.01)  # too short to measure anything
    assert speed.rate == 30.0
    assert app.Throughput(1.0).gpu_seconds(2048) == 300  # never more than one call may hold
    assert app.examples_from('["a", "", "b"]') == ["a", "b"]
    assert app.examples_from("not json") == [] and app.examples_from(None) == [] and app.examples_from('{"a": 1}') == []


def test_the_app_queue_is_bounded(app, child_repo):
    demo = app.build_demo(child_repo, examples=["Hi"])
    assert demo._queue.max_size == app.QUEUE_SIZE


def test_prepare_space_folder_needs_a_space_section(tmp_path):
    with pytest.raises(ReleaseError, match="no `space:` section"):
        prepare_space_folder(_config(), tmp_path / "space")
    assert not (tmp_path / "space").exists()


def test_requirements_pin_the_transformers_the_app_is_tested_with():
    lines = [ln.strip() for ln in (APP_DIR / "requirements.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    assert f"transformers=={transformers.__version__}" in pins
    assert {p.split("=")[0].split(">")[0].split("<")[0] for p in pins} == {"transformers", "torch", "huggingface_hub"}
    assert not any(p.startswith("gradio") for p in pins)  # the Space SDK brings gradio at sdk_version


def test_app_imports_only_what_a_space_provides():
    tree = ast.parse((APP_DIR / "app.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    third_party = roots - set(sys.stdlib_module_names)
    assert third_party == {"gradio", "torch", "transformers", "huggingface_hub", "spaces"}


def test_deployed_space_holds_the_three_files_and_names_the_child(tmp_path, child_repo):
    space = repo_name("space")
    folder = prepare_space_folder(_config(repo=space), tmp_path / "space")
    sha = Hub(token=TOKEN).deploy_space(space, folder, variables={"MODEL_ID": child_repo}, secrets={})

    api = HfApi(token=TOKEN)
    info = api.space_info(space)
    assert info.sha == sha and len(sha) == 40
    files = set(api.list_repo_files(space, repo_type="space")) - {".gitattributes"}
    assert files == set(SPACE_FILES)
    assert api.get_space_variables(space)["MODEL_ID"].value == child_repo
    readme = SpaceCard.load(api.hf_hub_download(space, "README.md", repo_type="space"))
    assert readme.data.sdk == "gradio" and readme.data.models[0] == "darwin-local/child"


def test_serve_last_release_needs_a_pushed_release(tmp_path):
    config = _config(repo="darwin-local/chat").model_copy(update={"runs_dir": tmp_path})
    with pytest.raises(ReleaseError, match="run `make release` first"):
        serve_last_release(config)


# --- the app ---------------------------------------------------------------------------------------


def _header(demo) -> str:
    return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "model-header")


def test_header_shows_the_parents_and_the_genome(served, child_repo):
    demo, _ = served
    text = _header(demo)
    ratios = GENOME["ratios"]
    assert f"# {child_repo.split('/')[-1]}" in text
    assert GENOME["father"]["repo"] in text and GENOME["mother"]["repo"] in text
    assert sum(r > 0 for r in ratios) == 4 and len(ratios) == 6
    assert "4 of 6 father FFNs blended" in text
    assert "Layers: 2 father FFN · 0 mother FFN · 4 blend." in text
    assert f"mean ratio {sum(ratios) / len(ratios):.3f}" in text
    images = [b for b in demo.blocks.values() if isinstance(b, gradio.Image)]
    assert len(images) == 1 and images[0].value is not None  # genome.png, fetched from the model repo


def test_chat_endpoint_streams_the_greedy_reply_of_the_model(client, child_repo):
    job = client.submit("Count to one hundred", "", 24, 0.0, api_name="/chat")
    updates = [u for u in job]
    final = job.result()

    assert len(updates) > 1  # streamed, not one final message
    assert all(updates[i + 1].startswith(updates[i]) for i in range(len(updates) - 1))
    assert final == updates[-1] and final.strip()
    # The same text as transformers' own greedy decode on the chat template: the app applies it right.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(child_repo, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(child_repo, trust_remote_code=True).eval()
    assert type(model).__name__ == "DarwinForCausalLM"
    inputs = tok.apply_chat_template([{"role": "user", "content": "Count to one hundred"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    assert final == tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_cancelling_a_reply_stops_generation(client):
    """Stop (here: the client's cancel) must end `generate`, not only the stream."""
    forwards = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: forwards.append(1) if type(m).__name__ == "DarwinForCausalLM" else None)
    try:
        # Uninterrupted, this greedy reply runs all 600 tokens (no EOS): only Stop can end it early.
        job = client.submit("Count to one hundred", "", 600, 0.0, api_name="/chat")
        while not job.outputs():
            time.sleep(0.02)
        assert _generate_threads(), "generation should still be running at the first streamed update"
        job.cancel()
        waited = _wait_no_generation(timeout_s=15)
    finally:
        hook.remove()
    assert not _generate_threads() and waited < 15
    assert len(forwards) < 300, f"generate ran {len(forwards)} steps after Stop"


def test_a_missing_model_shows_a_clear_error_instead_of_hanging(app):
    missing = repo_name("no-such-model")
    start = time.monotonic()
    demo = app.build_demo(missing)
    assert time.monotonic() - start < 30
    assert f"Model {missing} could not be loaded:" in _header(demo)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False)
    try:
        reply = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("hi", "", 8, 0.0, api_name="/chat")
    finally:
        demo.close()
    assert reply.startswith(f"Model {missing} could not be loaded:")
    assert "\n" not in reply and len(reply) < 400
