"""space.secrets: values from the environment at deploy time, passed as Space secrets, written nowhere."""

from tests.localhub_fixtures import TOKEN, repo_name  # first: sets HF_ENDPOINT

# isort: split
import pytest
from huggingface_hub import HfApi

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.hub.client import Hub
from release.hub.session import HubSession
from release.pipeline import stage_space
from release.run.records import Deployed, Pushed
from release.run.stages import StageBook

SECRET = "hf_privateReadTokenValue0123456789abcdef"


def _config(tmp_path, space_repo: str) -> ReleaseConfig:
    return ReleaseConfig.model_validate(dict(
        name="secrets", father={"repo": "darwin-local/father"}, mother={"repo": "darwin-local/mother"},
        child={"repo": "darwin-local/child"}, fitness={"kind": "calibration"}, runs_dir=str(tmp_path / "runs"),
        space={"repo": space_repo, "variables": {"GREETING": "hi"}, "secrets": ["DARWIN_TEST_READ_TOKEN"]},
    ))


def _session(local_hub) -> HubSession:
    session = HubSession(endpoint=local_hub.url)
    session.__dict__["hub"] = Hub(token=TOKEN)  # the run's write token, as open_hub provides it
    return session


def _pushed(config, c: str) -> Pushed:
    return Pushed(repo=config.child.repo, revision=c * 40)


def test_space_secrets_come_from_the_environment_and_are_written_nowhere(tmp_path, local_hub, monkeypatch):
    space = repo_name("secret-space")
    config = _config(tmp_path, space)
    config.run_dir.mkdir(parents=True)
    monkeypatch.setenv("DARWIN_TEST_READ_TOKEN", SECRET)
    book = StageBook(config.run_dir)
    result = book.run("space", ["k"], lambda: stage_space(config, _session(local_hub), _pushed(config, "a")),
                      record=Deployed)
    assert result.secrets == ["DARWIN_TEST_READ_TOKEN"]
    assert book.records["space"]["result"]["secrets"] == ["DARWIN_TEST_READ_TOKEN"]
    api = HfApi(token=TOKEN)
    assert set(api.get_space_secrets(space)) == {"DARWIN_TEST_READ_TOKEN"}
    variables = api.get_space_variables(space)
    assert variables["GREETING"].value == "hi" and all(v.value != SECRET for v in variables.values())
    # Not in stages.json, the Space folder, or any other file of the run folder; not in the Space repo.
    files = [p for p in config.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "stages.json" for p in files)
    assert all(SECRET.encode() not in p.read_bytes() for p in files)
    for name in api.list_repo_files(space, repo_type="space"):
        assert SECRET not in open(api.hf_hub_download(space, name, repo_type="space")).read()


def test_a_missing_secret_is_one_line_and_deploys_nothing(tmp_path, local_hub, monkeypatch):
    space = repo_name("secret-space")
    config = _config(tmp_path, space)
    monkeypatch.delenv("DARWIN_TEST_READ_TOKEN", raising=False)
    with pytest.raises(ReleaseError, match="DARWIN_TEST_READ_TOKEN.*not set in the environment") as e:
        stage_space(config, _session(local_hub), _pushed(config, "a"))
    assert "\n" not in str(e.value)
    assert not HfApi(token=TOKEN).repo_exists(space, repo_type="space")


def _foreign_space(tmp_path) -> str:
    space = repo_name("someone-elses-space")
    api = HfApi(token=TOKEN)
    api.create_repo(space, repo_type="space", space_sdk="gradio")
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "app.py").write_text("print('another app')\n")
    (folder / "README.md").write_text("---\nsdk: gradio\nmodels: [someone/else]\n---\n# Not ours\n")
    (folder / "data.csv").write_text("a,b\n")
    api.upload_folder(repo_id=space, folder_path=folder, repo_type="space")
    return space


def test_a_space_this_release_did_not_deploy_is_refused_unless_replace(tmp_path, local_hub, monkeypatch):
    monkeypatch.setenv("DARWIN_TEST_READ_TOKEN", SECRET)
    api = HfApi(token=TOKEN)
    space = _foreign_space(tmp_path)
    head = api.space_info(space).sha
    config = _config(tmp_path, space)
    with pytest.raises(ReleaseError, match="space.on_existing: replace") as e:
        stage_space(config, _session(local_hub), _pushed(config, "a"))
    assert "\n" not in str(e.value) and api.space_info(space).sha == head
    replacing = config.model_copy(update={"space": config.space.model_copy(update={"on_existing": "replace"})})
    stage_space(replacing, _session(local_hub), _pushed(replacing, "a"))
    assert set(api.list_repo_files(space, repo_type="space")) - {".gitattributes"} == \
        {"app.py", "requirements.txt", "README.md"}  # the old data.csv is gone
    # Now it is this release's Space: redeploying needs no `replace`.
    again = stage_space(config, _session(local_hub), _pushed(config, "b"))
    assert api.get_space_variables(space)["MODEL_REVISION"].value == "b" * 40 and again[0].repo == space
