"""The Space that chats with the child: its folder (app, requirements, README) and a local server.

`prepare_space_folder` writes exactly the three files the Space repo holds; deployment (create the repo,
upload the folder, set MODEL_ID) is the Hub layer's job. `python -m release.hub.space serve --model ID` runs
the same app locally, against whatever Hub HF_ENDPOINT names.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.hub.session import open_hub
from release.run.files import staging_folder

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "space"
TEMPLATE = ROOT / "cards" / "space_readme.md.j2"
SPACE_FILES = ("app.py", "requirements.txt", "README.md")
SHORT_DESCRIPTION_MAX = 60  # the Hub rejects longer short_description values
EMOJI, COLOR_FROM, COLOR_TO = "🧬", "blue", "green"


def short_description(text: str, limit: int = SHORT_DESCRIPTION_MAX) -> str:
    """One line of at most `limit` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-") + "…"


def render_space_readme(config: ReleaseConfig) -> str:
    """The Space README: typed front matter (SpaceCardData) over the Jinja body in cards/."""
    import gradio
    from huggingface_hub import SpaceCard, SpaceCardData, constants

    space = _space_spec(config)
    description = " ".join(config.card.description.split())
    child = config.child.repo
    data = SpaceCardData(
        title=child.split("/")[-1],  # the child's name: what the Space is about
        emoji=EMOJI,
        colorFrom=COLOR_FROM,
        colorTo=COLOR_TO,
        sdk="gradio",
        sdk_version=gradio.__version__,  # the version the app was tested with
        app_file="app.py",
        models=[child, config.father.repo, config.mother.repo],  # the Hub links the Space from each model
        license=config.card.license, license_name=config.card.license_name, license_link=config.card.license_link,
        short_description=short_description(description or f"Chat with {config.name}"),
        pinned=False,
        # Downloaded when the Space is built, not at every cold start.
        preload_from_hub=[child],
        **({"suggested_hardware": space.hardware} if space.hardware else {}),
    )
    card = SpaceCard.from_template(
        data, template_path=str(TEMPLATE), model_id=config.child.repo, space_id=space.repo,
        description=description, endpoint=constants.ENDPOINT,
    )
    return str(card)


def prepare_space_folder(config: ReleaseConfig, out_dir: Path) -> Path:
    """Write app.py, requirements.txt and README.md (nothing else) to out_dir, replacing it whole."""
    _space_spec(config)
    missing = [name for name in SPACE_FILES[:2] if not (APP_DIR / name).is_file()]
    if missing or not TEMPLATE.is_file():
        raise ReleaseError(f"Space sources missing ({', '.join(missing) or TEMPLATE.name}) under {ROOT}: "
                           "run from a full checkout of darwin-release")
    if Path(out_dir).resolve() in (APP_DIR.resolve(), ROOT, *ROOT.parents):  # the app's own sources
        raise ReleaseError(f"the Space folder {out_dir} would replace darwin-release's own files: choose a run "
                           "folder of its own (runs_dir/name)")
    with staging_folder(out_dir) as staging:
        for name in SPACE_FILES[:2]:
            shutil.copyfile(APP_DIR / name, staging / name)
        (staging / "README.md").write_text(render_space_readme(config), encoding="utf-8")
    log.info("prepared Space folder %s for %s", out_dir, config.space.repo)
    return Path(out_dir)


def space_secrets(config: ReleaseConfig) -> dict[str, str]:
    """The values of `space.secrets`, read from the environment now (never stored by this tool)."""
    names = _space_spec(config).secrets
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise ReleaseError(f"space.secrets names {missing[0]}, but it is not set in the environment: export "
                           f"{missing[0]}=... before deploying (its value is passed to the Space as a secret only)")
    return {name: os.environ[name] for name in names}


def _space_spec(config: ReleaseConfig):
    if config.space is None:
        raise ReleaseError("the config has no `space:` section: add `space: {repo: owner/name}` to deploy a Space")
    return config.space


def load_app():
    """space/app.py as a module (it is shipped standalone, so it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("darwin_space_app", APP_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def space_variables(config: ReleaseConfig, revision: str | None) -> dict[str, str]:
    """The Space's variables: the child (and its commit), the example prompts, and the config's own."""
    space = _space_spec(config)
    out = {"MODEL_ID": config.child.repo, **({"MODEL_REVISION": revision} if revision else {})}
    if space.examples:
        out["EXAMPLES"] = json.dumps(space.examples, ensure_ascii=False)
    return out | space.variables


def serve(model_id: str, revision: str | None = None, port: int = 7860, host: str = "127.0.0.1",
          examples: list[str] | None = None) -> None:
    """Serve the Space app locally until interrupted (HF_ENDPOINT decides which Hub it reads)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ["MODEL_ID"] = model_id  # the module-level demo of app.py reads it: build the real one only once
    if revision:
        os.environ["MODEL_REVISION"] = revision
    else:
        os.environ.pop("MODEL_REVISION", None)
    if examples:
        os.environ["EXAMPLES"] = json.dumps(examples, ensure_ascii=False)
    app = load_app()
    log.info("serving the Space app for %s on http://%s:%d", model_id, host, port)
    app.demo.launch(server_name=host, server_port=port, share=False)  # with the app's own bounded queue


def serve_last_release(config: ReleaseConfig, port: int = 7860) -> int:
    """`make space`: chat locally with the child the last release pushed (runs/<name>/release.json).

    For the embedded local hub, the store is served for as long as the app runs, unless `make hub`
    already serves it.
    """
    summary_path = config.run_dir / "release.json"
    try:
        summary = json.loads(summary_path.read_text())
        model_id, revision, endpoint = summary["child_repo"], summary["child_revision"], summary["endpoint"]
    except (OSError, ValueError, KeyError):
        raise ReleaseError(f"no pushed release found in {summary_path}: run `make release` first") from None
    examples = config.space.examples if config.space else None
    if config.hub.endpoint == "local" and not _answers(endpoint):
        with open_hub(config):
            serve(model_id, revision, port, examples=examples)
    else:
        os.environ["HF_ENDPOINT"] = endpoint
        serve(model_id, revision, port, examples=examples)
    return 0


def _answers(url: str) -> bool:
    """Whether something listens at url's host and port (a local hub started by `make hub`)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.hub.space", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the Space app locally")
    run.add_argument("--model", required=True, help="model repo id (or local folder) to chat with")
    run.add_argument("--revision", default=None)
    run.add_argument("--port", type=int, default=7860)
    run.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve(args.model, args.revision, args.port, args.host)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
