"""Safe push (child.on_existing) with the real client against the session's local hub."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from release.config import BranchTarget
from release.errors import ReleaseError
from release.hub.client import Hub
from release.hub.safe_push import push_release

FATHER, MOTHER = "darwin-local/father", "darwin-local/mother"


@pytest.fixture(scope="module")
def hub():
    return Hub(token=TOKEN)


@pytest.fixture(scope="module")
def api():
    return HfApi(token=TOKEN)


def _release(path: Path, shards: dict[str, bytes], father=FATHER, mother=MOTHER) -> Path:
    """A release folder: darwin_genome.json naming its parents, a config, and weight files."""
    path.mkdir(parents=True)
    genome = {"ratios": [0.1], "tool": {"name": "darwin-release", "version": "0"},
              "father": {"repo": father, "revision": "a" * 40}, "mother": {"repo": mother, "revision": "b" * 40}}
    (path / "darwin_genome.json").write_text(json.dumps(genome))
    (path / "config.json").write_text('{"model_type": "darwin"}')
    for name, data in shards.items():
        (path / name).write_bytes(data)
    return path


def _foreign(api, tmp_path: Path) -> str:
    """A repo holding someone else's model: stale shards the release must never sit beside silently."""
    repo = repo_name("foreign")
    api.create_repo(repo)
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gemma4"}')
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"\x01" * 3000)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 3000)
    (folder / "README.md").write_text("# Someone else's model\n")
    api.upload_folder(repo_id=repo, folder_path=folder)
    return repo


def _files(api, repo, revision="main") -> set[str]:
    return set(api.list_repo_files(repo, revision=revision)) - {".gitattributes"}


def _commits(api, repo, revision="main") -> int:
    return len(api.list_repo_commits(repo, revision=revision))


def _push(hub, folder, repo, on_existing="refuse"):
    return push_release(hub, folder, repo, on_existing, FATHER, MOTHER, "Release test")


def test_new_repo_gets_one_commit_on_main_and_a_rerun_none(hub, api, tmp_path):
    folder = _release(tmp_path / "r", {"model.safetensors": b"\x07" * 4000})
    repo = repo_name("child")
    first = _push(hub, folder, repo)
    assert first["target"] == "main" and first["ref"] == "main" and first["committed"]
    assert first["revision"] == hub.head(repo) and _files(api, repo) == {p.name for p in folder.iterdir()}
    commits = _commits(api, repo)
    again = _push(hub, folder, repo)
    assert again["revision"] == first["revision"] and not again["committed"] and _commits(api, repo) == commits


def test_a_new_release_of_the_same_parents_replaces_its_own_stale_shards(hub, api, tmp_path):
    repo = repo_name("child")
    _push(hub, _release(tmp_path / "v1", {"model-00001-of-00002.safetensors": b"\x01" * 3000,
                                          "model-00002-of-00002.safetensors": b"\x02" * 3000}), repo)
    v2 = _release(tmp_path / "v2", {"model.safetensors": b"\x03" * 5000})
    pushed = _push(hub, v2, repo)
    assert pushed["target"] == "main" and _files(api, repo) == {"config.json", "darwin_genome.json",
                                                                "model.safetensors"}


def test_an_interrupted_push_leaves_an_empty_repo_that_the_rerun_fills(hub, api, tmp_path):
    repo = repo_name("child")
    api.create_repo(repo)  # killed right after creating it
    folder = _release(tmp_path / "r", {"model.safetensors": b"\x07" * 4000})
    assert _push(hub, folder, repo)["target"] == "main"
    assert _files(api, repo) == {p.name for p in folder.iterdir()}


def test_a_foreign_repo_is_refused_in_one_line_and_left_alone(hub, api, tmp_path):
    repo = _foreign(api, tmp_path)
    head, before = hub.head(repo), _files(api, repo)
    with pytest.raises(ReleaseError) as e:
        _push(hub, _release(tmp_path / "r", {"model.safetensors": b"\x07" * 4000}), repo)
    message = str(e.value)
    assert "\n" not in message and "on_existing" in message
    assert all(word in message for word in ("pr", "branch", "replace"))
    assert hub.head(repo) == head and _files(api, repo) == before
    # A Darwin child of other parents is someone else's release too.
    other = repo_name("other-child")
    _push(hub, _release(tmp_path / "other", {"model.safetensors": b"\x05" * 4000}, father="x/other"), other)
    with pytest.raises(ReleaseError, match="on_existing"):
        _push(hub, _release(tmp_path / "r2", {"model.safetensors": b"\x07" * 4000}), other)


def test_pr_opens_one_pull_request_holding_exactly_the_release(hub, api, tmp_path):
    repo = _foreign(api, tmp_path)
    head, before = hub.head(repo), _files(api, repo)
    folder = _release(tmp_path / "r", {"model.safetensors": b"\x07" * 4000})
    pushed = _push(hub, folder, repo, "pr")
    assert pushed["target"] == "pr" and pushed["committed"] and pushed["ref"].startswith("refs/pr/")
    assert pushed["pr_url"].endswith(f"/{repo}/discussions/{pushed['ref'].rsplit('/', 1)[1]}")
    assert hub.head(repo) == head and _files(api, repo) == before  # main untouched
    assert hub.head(repo, revision=pushed["ref"]) == pushed["revision"]
    assert _files(api, repo, pushed["revision"]) == {p.name for p in folder.iterdir()}  # merged: exactly it
    # The rerun finds its pull request: no second one, no commit.
    prs = hub.pull_requests(repo)
    again = _push(hub, folder, repo, "pr")
    assert again["ref"] == pushed["ref"] and again["revision"] == pushed["revision"] and not again["committed"]
    assert hub.pull_requests(repo) == prs
    # A changed release is a new pull request.
    changed = _push(hub, _release(tmp_path / "r2", {"model.safetensors": b"\x08" * 4000}), repo, "pr")
    assert changed["committed"] and changed["ref"] != pushed["ref"]


def test_branch_commits_the_release_to_that_branch(hub, api, tmp_path):
    repo = _foreign(api, tmp_path)
    head, before = hub.head(repo), _files(api, repo)
    folder = _release(tmp_path / "r", {"model.safetensors": b"\x07" * 4000})
    pushed = _push(hub, folder, repo, BranchTarget(branch="darwin-genesis"))
    assert (pushed["target"], pushed["ref"], pushed["committed"]) == ("branch", "darwin-genesis", True)
    assert hub.head(repo, revision="darwin-genesis") == pushed["revision"]
    assert _files(api, repo, "darwin-genesis") == {p.name for p in folder.iterdir()}
    assert hub.head(repo) == head and _files(api, repo) == before
    commits = _commits(api, repo, "darwin-genesis")
    again = _push(hub, folder, repo, BranchTarget(branch="darwin-genesis"))
    assert not again["committed"] and _commits(api, repo, "darwin-genesis") == commits


def test_replace_makes_one_commit_after_which_main_holds_exactly_the_release(hub, api, tmp_path):
    repo = _foreign(api, tmp_path)
    commits = _commits(api, repo)
    folder = _release(tmp_path / "r", {"model.safetensors": b"\x07" * 4000})
    pushed = _push(hub, folder, repo, "replace")
    assert pushed["target"] == "main" and pushed["committed"] and _commits(api, repo) == commits + 1
    assert _files(api, repo) == {p.name for p in folder.iterdir()}
    for path in folder.iterdir():  # the release's bytes, not the old model's
        assert Path(hub.api.hf_hub_download(repo, path.name, revision=pushed["revision"])).read_bytes() \
            == path.read_bytes()
    # Now it is this release's repo: a rerun makes no commit, with or without `replace`.
    assert not _push(hub, folder, repo, "replace")["committed"] and not _push(hub, folder, repo)["committed"]
    assert _commits(api, repo) == commits + 1


BASE = """name: t
father: {repo: a/father}
mother: {repo: a/mother}
fitness: {kind: calibration}
"""


@pytest.mark.parametrize("extra, message", [
    ("child: {repo: a/father}", "child.repo a/father is a parent"),
    ("child: {repo: A/Mother}", "child.repo A/Mother is a parent"),
    ("child: {repo: a/child}\nspace: {repo: a/mother}", "space.repo a/mother is a parent"),
    ("child: {repo: a/child, on_existing: merge}", "child.on_existing"),
    ("child: {repo: a/child}\nspace: {repo: a/s, variables: {HF_TOKEN: hf_abcdefghijklmnopqrstuvwxyz0123}}",
     "HF_TOKEN looks like a Hub token.*space.secrets"),
    ("child: {repo: a/child}\nspace: {repo: a/s, secrets: [not a name]}", "not an environment variable name"),
])
def test_config_refuses_pushing_over_a_parent_and_public_tokens(tmp_path, extra, message):
    from release.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(BASE + extra + "\n")
    with pytest.raises(ReleaseError, match=message) as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_config_on_existing_values(tmp_path):
    from release.config import load_config

    path = tmp_path / "c.yaml"
    for value, expected in (("pr", "pr"), ("replace", "replace"), ("{branch: v2}", BranchTarget(branch="v2"))):
        path.write_text(BASE + f"child: {{repo: a/child, on_existing: {value}}}\n")
        assert load_config(path).child.on_existing == expected
    path.write_text(BASE + "child: {repo: a/child}\n")
    assert load_config(path).child.on_existing == "refuse"


def test_the_flagship_config_proposes_its_release_as_a_pull_request():
    from release.config import load_config

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "configs/darwin-4b-genesis.yaml").child.on_existing == "pr"


@pytest.mark.parametrize("push, shown", [
    ({"target": "pr", "ref": "refs/pr/3", "pr_url": "http://hub/a/c/discussions/3", "committed": True},
     "as pull request refs/pr/3: http://hub/a/c/discussions/3"),
    ({"target": "branch", "ref": "darwin-v2", "pr_url": None, "committed": True}, "on branch darwin-v2"),
])
def test_the_summary_says_where_the_release_went(push, shown):
    from release.ui.closing import closing_lines

    out = "\n".join(closing_lines({"ran": ["push"], "child_repo": "a/c", "child_revision": "c" * 40,
                                    "endpoint": "http://hub", "child_push": push}, "c.yaml"))
    assert shown in out and f"revision='{'c' * 40}'" in out
