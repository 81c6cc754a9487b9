"""The closing summary is right for every config: commands for this config, scores with their errors."""

import json
import shlex
import sys

from release.ui.closing import closing_lines

SHA = "0123456789abcdef0123456789abcdef01234567"


def _summary(**changes) -> dict:
    summary = {
        "child_repo": "acme/child", "child_revision": SHA, "endpoint": "https://huggingface.co",
        "child_push": {"target": "pr", "ref": "refs/pr/3", "pr_url": "https://huggingface.co/acme/child/discussions/3"},
        "space_repo": "acme/chat", "space_revision": SHA, "stages_run": ["push", "space", "verify"],
        "trust_remote_code": True, "local_root": None, "heldout_items": 96,
        "scores": {"child": {"click": 0.61, "fitness": 0.61}, "father": {"click": 0.5, "fitness": 0.5},
                   "mother": {"click": 0.52, "fitness": 0.52}},
        "stderr": {"child": {"click": 0.02, "fitness": 0.02}, "father": {"click": 0.02, "fitness": 0.02},
                   "mother": {"click": 0.02, "fitness": 0.02}},
        "vigor": {"claimed": True, "reason": ""},
        "fetched": {"father": [1e6, 2e6]},
    }
    return summary | changes


def test_a_release_on_the_hub_names_its_own_commands():
    text = "\n".join(closing_lines(_summary(), "configs/my release.yaml"))
    assert "HF_ENDPOINT" not in text and "localhub" not in text and "make " not in text
    assert "as pull request refs/pr/3" in text
    assert f"from_pretrained('acme/child', revision='{SHA}', trust_remote_code=True)" in text
    assert "darwin-release space-serve 'configs/my release.yaml'" in text  # quoted: works as printed
    assert "child  click 0.610 ± 0.020   fitness 0.610 ± 0.020" in text
    assert "hybrid vigor: yes" in text
    assert "pulled" not in text  # this run did not pull


def test_a_release_on_a_local_store_says_how_to_serve_it_again_and_a_stock_child_needs_no_remote_code():
    summary = _summary(endpoint="http://127.0.0.1:8871", local_root="/tmp/my store", trust_remote_code=False,
                       child_push={"target": "main"}, space_repo=None, stages_run=["pull", "push"],
                       vigor={"claimed": False, "reason": "the child does not beat the father"})
    lines = closing_lines(summary, "c.yaml")
    serve = lines[lines.index("serve this config's store again (in another terminal; reading needs no token):") + 1]
    python, *args = shlex.split(serve)
    assert python in ("python", sys.executable)  # `python` only when it is this interpreter
    assert args == ["-m", "release.localhub", "--root", "/tmp/my store", "--port", "8871"]
    text = "\n".join(lines)
    assert "HF_ENDPOINT=http://127.0.0.1:8871 " in text and "trust_remote_code" not in text
    assert "hybrid vigor: not claimed: the child does not beat the father" in text
    assert "space-serve" not in text and "pulled father: 1.0 MB of the repo's 2.0 MB" in text
    json.dumps(summary)  # what --json prints
