"""Preflight: what the Hub would refuse at push or deploy fails `--plan` and `run` first, with one line,
before any parent weight is downloaded.

The session's local hub serves the tiny parents and also knows a scoped token (user alice, org acme), as
`python -m release.localhub --token T:alice,acme` does.
"""

import os
import uuid
from pathlib import Path

import pytest
import yaml

from release.cli import main
from release.plan.preflight import token_rights

ROOT = Path(__file__).resolve().parents[1]
ALICE = "hf_preflight_alice"


@pytest.fixture(scope="module")
def parents(local_hub, tiny_parents):
    """(father, mother) published with cards that state their licences."""
    from huggingface_hub import HfApi

    api = HfApi(token=local_hub.tokens[0])
    repos = {}
    for role, folder, licence in (("father", tiny_parents.father, "gemma"),
                                  ("mother", tiny_parents.mother, "apache-2.0")):
        repos[role] = f"darwin-local/preflight-{role}-{uuid.uuid4().hex[:8]}"
        api.create_repo(repos[role])
        api.upload_folder(folder_path=str(folder), repo_id=repos[role])
        api.upload_file(path_or_fileobj=f"---\nlicense: {licence}\n---\n# tiny {role}\n".encode(),
                        path_in_repo="README.md", repo_id=repos[role])
    return repos["father"], repos["mother"]


@pytest.fixture
def as_alice(local_hub, parents, monkeypatch):
    """The session's hub also knows a scoped token, ALICE (user alice, org acme), and HF_TOKEN is it."""
    from release.localhub.tokens import Tokens

    monkeypatch.setattr(local_hub, "accounts", Tokens([*local_hub.tokens, f"{ALICE}:alice,acme"]))
    monkeypatch.setenv("HF_TOKEN", ALICE)
    return parents


def _config(tmp_path: Path, father: str, mother: str, child="alice/child", space="acme/chat", hardware=None,
            **card) -> Path:
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    raw.update(name="preflight", runs_dir=str(tmp_path / "runs"), tiny_parents=False,
               father={"repo": father}, mother={"repo": mother}, child={"repo": child},
               space={"repo": space, "hardware": hardware})
    raw["card"].update(card)
    raw["hub"] = {"endpoint": None}  # HF_ENDPOINT
    path = tmp_path / "preflight.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _downloaded(tmp_path: Path, *repos: str) -> list[Path]:
    cache = Path(os.environ["HF_HOME"]) / "hub"
    return [p for r in repos for p in (cache / f"models--{r.replace('/', '--')}").rglob("*.safetensors")] + \
        list((tmp_path / "runs").rglob("*.safetensors"))


def _fails_plan_and_run(config: Path, capsys, *expected: str) -> None:
    for args in (["run", str(config), "--plan"], ["run", str(config)]):
        code = main(args)
        out = capsys.readouterr()
        assert code == 2, out.out + out.err
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.err
        assert all(e in lines[0] for e in expected), lines[0]
        assert "[1/10] pull" not in out.out


@pytest.mark.parametrize("child, space, refused", [("bob/child", "acme/chat", "child.repo bob/child"),
                                                   ("alice/child", "bob/chat", "space.repo bob/chat")])
def test_a_token_that_cannot_write_the_namespace_fails_before_any_download(as_alice, tmp_path, capsys,
                                                                          child, space, refused):
    father, mother = as_alice
    config = _config(tmp_path, father, mother, child=child, space=space)
    _fails_plan_and_run(config, capsys, refused, "user alice (orgs acme)", "cannot write to bob", "HF_TOKEN")
    assert not _downloaded(tmp_path, father, mother)


def test_the_plan_shows_the_token_and_the_parents_licences_and_warns_on_a_different_child_licence(
        as_alice, tmp_path, capsys):
    father, mother = as_alice
    code = main(["run", str(_config(tmp_path, father, mother)), "--plan"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "token: user alice (orgs acme), write token; may write alice/child, acme/chat" in out
    assert f"father  {father}: licence gemma, not gated" in out
    assert f"mother  {mother}: licence apache-2.0, not gated" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "apache-2.0 differs from the father's licence gemma" in warnings[0]


@pytest.mark.parametrize("card, expected", [
    ({"hardware": "zero-a10"}, ["space.hardware 'zero-a10'", "did you mean 'zero-a10g'"]),
    ({"license": "apache2"}, ["card.license 'apache2'", "did you mean 'apache-2.0'", "license: other"]),
    ({"license": "other"}, ["card.license is other", "card.license_name"]),
])
def test_values_the_hub_would_refuse_late_fail_before_any_download(as_alice, tmp_path, capsys, card,
                                                                  expected):
    father, mother = as_alice
    _fails_plan_and_run(_config(tmp_path, father, mother, **card), capsys, *expected)
    assert not _downloaded(tmp_path, father, mother)


def test_other_with_a_name_is_a_licence(as_alice, tmp_path, capsys):
    father, mother = as_alice
    config = _config(tmp_path, father, mother, license="other", license_name="darwin-research",
                     license_link="https://example.org/LICENSE")
    assert main(["run", str(config), "--plan"]) == 0
    assert "licence other (darwin-research)" in capsys.readouterr().out


def test_fine_grained_and_read_tokens_write_only_where_their_scopes_say():
    # whoami-v2 answers as the Hub gives them for a fine-grained token and a read token.
    fine = {"name": "alice", "orgs": [{"name": "acme", "roleInOrg": "write"}, {"name": "club", "roleInOrg": "read"}],
            "auth": {"type": "access_token", "accessToken": {"role": "fineGrained", "fineGrained": {"scoped": [
                {"entity": {"type": "org", "name": "acme"}, "permissions": ["repo.content.read", "repo.write"]},
                {"entity": {"type": "user", "name": "alice"}, "permissions": ["repo.content.read"]},
                {"entity": {"type": "model", "name": "club/shared"}, "permissions": ["repo.write"]}]}}}}
    rights = token_rights(fine)
    assert rights.may_write("acme/x") and rights.may_write("club/shared")
    assert not rights.may_write("alice/x") and not rights.may_write("club/other")
    classic = {**fine, "auth": {"type": "access_token", "accessToken": {"role": "write"}}}
    assert token_rights(classic).may_write("alice/x") and token_rights(classic).may_write("acme/x")
    assert not token_rights(classic).may_write("club/x")  # a read role in the org
    read = {**fine, "auth": {"type": "access_token", "accessToken": {"role": "read"}}}
    assert not token_rights(read).may_write("alice/x")


def test_without_a_token_the_plan_says_what_the_push_needs_and_the_run_stops_before_any_download(
        parents, tmp_path, capsys, monkeypatch):
    father, mother = parents
    monkeypatch.delenv("HF_TOKEN", raising=False)
    config = _config(tmp_path, father, mother)
    assert main(["run", str(config), "--plan"]) == 0
    assert "token: none set; the push will need a token with write access to acme, alice" in capsys.readouterr().out
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Hub token, and the release pushes alice/child") and err.count("\n") == 1
    assert not _downloaded(tmp_path, father, mother)
    assert main(["pull", str(config)]) == 0  # a run that does not push needs no token


def test_the_local_hubs_unscoped_token_writes_every_namespace(parents, local_hub, tmp_path, capsys, monkeypatch):
    father, mother = parents
    monkeypatch.setenv("HF_TOKEN", local_hub.tokens[0])  # a plain `--token T`
    assert main(["run", str(_config(tmp_path, father, mother, child="anyone/child", space="acme/chat")), "--plan"]) == 0
    assert "token: the local hub's unscoped token (writes every namespace)" in capsys.readouterr().out
