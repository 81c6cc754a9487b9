"""Tokens write only their own namespaces, as on the Hub: the real client gets the Hub's 403."""

from tests.localhub_fixtures import TOKEN  # noqa: F401  (first: sets HF_ENDPOINT)

# isort: split
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from release.localhub import serve
from release.localhub.tokens import Tokens, parse_token


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("ns-hub"), tokens=["hf_admin", "hf_alice:alice,acme"]) as hub:
        yield hub


def _forbidden(call) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        call()
    assert e.value.response.status_code == 403, e.value


def test_a_scoped_token_writes_its_user_and_orgs_only(hub, tmp_path):
    admin, alice = HfApi(endpoint=hub.url, token="hf_admin"), HfApi(endpoint=hub.url, token="hf_alice")
    me = alice.whoami()
    assert me["name"] == "alice" and [o["name"] for o in me["orgs"]] == ["acme"]
    assert alice.create_repo("own").repo_id == "alice/own"  # no namespace: the token's user
    alice.create_repo("acme/team-model")
    alice.upload_file(path_or_fileobj=b"ok", path_in_repo="a.txt", repo_id="acme/team-model")

    _forbidden(lambda: alice.create_repo("foreign-org/model"))
    admin.create_repo("foreign-org/model")  # a plain token writes every namespace (the old behaviour)
    (tmp_path / "w.safetensors").write_bytes(b"\0" * 128)
    _forbidden(lambda: alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="foreign-org/model"))
    _forbidden(lambda: alice.upload_folder(repo_id="foreign-org/model", folder_path=tmp_path))
    _forbidden(lambda: alice.create_commit("foreign-org/model", [CommitOperationAdd("p.txt", b"p")],
                                           commit_message="pr", create_pr=True))
    _forbidden(lambda: alice.create_branch("foreign-org/model", branch="dev"))
    _forbidden(lambda: alice.delete_repo("foreign-org/model"))
    assert admin.list_repo_files("foreign-org/model") == [".gitattributes"]
    assert alice.list_repo_files("foreign-org/model") == [".gitattributes"]  # public: readable


def test_private_repos_of_other_namespaces_are_invisible(hub):
    admin, alice = HfApi(endpoint=hub.url, token="hf_admin"), HfApi(endpoint=hub.url, token="hf_alice")
    admin.create_repo("bob/secret", private=True)
    with pytest.raises(RepositoryNotFoundError):
        alice.repo_info("bob/secret")
    alice.create_repo("acme/private", private=True)
    assert admin.repo_info("acme/private").private and alice.repo_info("acme/private").private


def test_token_specs():
    assert parse_token("hf_x") == ("hf_x", None)
    assert parse_token("hf_x:alice, acme") == ("hf_x", ["alice", "acme"])
    for bad in ("hf_x:", "hf_x:bad name", ":alice"):
        with pytest.raises(ValueError):
            parse_token(bad)
    tokens = Tokens({"hf_a": ["alice"], "hf_b": None})
    assert tokens.account("hf_a").may_write("alice") and not tokens.account("hf_a").may_write("acme")
    assert tokens.account("hf_b").may_write("anyone") and tokens.account("hf_c") is None
