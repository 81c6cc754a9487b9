"""The Space app in a real headless Chromium: chat, streaming, Stop, and nothing fetched beyond 127.0.0.1."""

from tests.localhub_fixtures import free_port, repo_name  # first: sets HF_ENDPOINT

# isort: split
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from release.hub.space import load_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
EXAMPLES = ["Tell me a story about a fox", "안녕하세요! 자기소개를 해 주세요."]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def app_url(space_child_repo):
    demo = load_app().build_demo(space_child_repo, examples=EXAMPLES)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1100, "height": 1000})
        browser.close()


def _generating() -> bool:
    return any(t.name == "darwin-generate" and t.is_alive() for t in threading.enumerate())


def test_chat_streams_in_the_browser_stops_and_stays_on_127_0_0_1(page, app_url):
    hosts = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname))
    page.goto(app_url)
    page.get_by_placeholder("Type a message...").wait_for()
    assert "Father darwin-local/tiny-gemma4-father × mother darwin-local/tiny-qwen3_5-mother" in \
        page.locator("#model-header").inner_text()

    # Greedy and long: this reply runs all 600 tokens uninterrupted (no EOS), so only Stop ends it early.
    page.get_by_text("Generation settings").click()
    for label, value in (("Max new tokens", "600"), ("Temperature (0 = greedy)", "0")):
        box = page.get_by_label(f"number input for {label}")
        box.fill(value)
        box.press("Enter")
    forwards = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: forwards.append(1) if type(m).__name__ == "DarwinForCausalLM" else None)
    try:
        page.get_by_placeholder("Type a message...").fill("Count to one hundred")
        page.keyboard.press("Enter")
        reply = page.get_by_test_id("bot").last
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:  # the reply grows in place: streaming
            text = reply.inner_text() if reply.count() else ""
            if text.strip() and (not seen or text != seen[-1]):
                seen.append(text)
            time.sleep(0.03)
        assert len(seen) >= 3, seen
        assert _generating()
        page.locator("button.stop-button").click()
        deadline = time.monotonic() + 15
        while _generating() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _generating(), "Stop must end generate, not only the stream"
    finally:
        hook.remove()
    assert len(forwards) < 300, f"{len(forwards)} generation steps ran despite Stop"
    page.locator("button.submit-button").wait_for(state="visible")  # the page is ready for the next message
    stopped = reply.inner_text()
    assert stopped.strip() and len(stopped) >= len(seen[-1])

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "space_chat.png"), full_page=True)
    assert hosts and set(hosts) <= {"127.0.0.1", "localhost"}, sorted(set(hosts))


def test_a_model_that_cannot_load_shows_why_on_the_page(page):
    missing = repo_name("no-such-model")
    demo = load_app().build_demo(missing)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False)
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        header = page.locator("#model-header")
        page.get_by_text("Generation settings").wait_for()  # the whole page has rendered
        text = header.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "space_error.png"), full_page=True)
    finally:
        demo.close()
    assert f"Model {missing} could not be loaded:" in text
    assert "not a valid model identifier" in text  # transformers' own reason, on one line
    assert "Set the Space variable MODEL_ID" in text  # and the fix


def test_clicking_an_example_prompt_sends_it_and_streams_the_reply(page, app_url):
    page.goto(app_url)
    page.get_by_placeholder("Type a message...").wait_for()
    page.get_by_text("Generation settings").click()
    for label, value in (("Max new tokens", "48"), ("Temperature (0 = greedy)", "0")):
        box = page.get_by_label(f"number input for {label}")
        box.fill(value)
        box.press("Enter")
    example = page.get_by_text(EXAMPLES[1], exact=True).first
    example.wait_for()
    example.click()
    page.get_by_test_id("user").last.wait_for()
    assert EXAMPLES[1] in page.get_by_test_id("user").last.inner_text()  # the example was sent as the message
    reply = page.get_by_test_id("bot").last
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the reply grows in place: streaming
        text = reply.inner_text() if reply.count() else ""
        if text.strip() and (not seen or text != seen[-1]):
            seen.append(text)
        if len(seen) >= 2 and not _generating():
            break
        time.sleep(0.03)
    assert len(seen) >= 2, seen
    page.locator("button.submit-button").wait_for(state="visible")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "space_example.png"), full_page=True)
