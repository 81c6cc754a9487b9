"""`search.track_space: owner/name`: the search's trackio dashboard as a Gradio Space on the configured Hub.

After every generation (and at the end) the project's trackio data (its SQLite store, copied
consistently with SQLite's backup API, and its media: the genome images) is pushed to the Space with a
small app that serves trackio's own dashboard over it, so the run can be watched from anywhere. Through
the Hub layer (`release.hub`), so it works on any endpoint the release uses, the local one included.

Why not `trackio.init(space_id=...)`: that mode logs over HTTP to the running Space and stores its data
in a Hub Bucket; a push of files is what every Hub-compatible endpoint serves.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

APP = '''"""trackio's dashboard over the darwin-release search data in this Space (pushed by the search)."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ["TRACKIO_DIR"] = os.path.join(HERE, "trackio")  # trackio reads it at import

import trackio  # noqa: E402

trackio.show(project=os.environ.get("TRACKIO_PROJECT"), host=os.environ.get("HOST", "0.0.0.0"),
             server_port=int(os.environ.get("PORT", "7860")), open_browser=False, block_thread=True)
'''

README = """---
title: {project} search
sdk: gradio
app_file: app.py
tags: [trackio, darwin-release]
---

Live dashboard of the darwin-release search `{project}` (trackio), updated after every generation.
"""


def space_folder(project: str, out: Path) -> Path:
    """The Space's files for `project`: app, requirements, README and a consistent copy of the data."""
    import trackio
    from trackio.sqlite_storage import SQLiteStorage
    from trackio.utils import MEDIA_DIR

    db = SQLiteStorage.get_project_db_path(project)
    data = out / "trackio"
    data.mkdir(parents=True, exist_ok=True)
    source, copy = sqlite3.connect(db), sqlite3.connect(data / db.name)
    try:
        source.backup(copy)  # consistent even while trackio's writer thread appends
    finally:
        source.close()
        copy.close()
    media = MEDIA_DIR / project
    if media.is_dir():
        shutil.copytree(media, data / "media" / project, dirs_exist_ok=True)
    (out / "app.py").write_text(APP)
    (out / "requirements.txt").write_text(f"trackio=={trackio.__version__}\n")
    (out / "README.md").write_text(README.format(project=project))
    return out


def push_dashboard(project: str, space_repo: str, private: bool = False) -> str:
    """Push the project's dashboard to `space_repo`; returns the commit sha."""
    from release.hub.client import Hub  # huggingface_hub reads HF_ENDPOINT when first imported

    with tempfile.TemporaryDirectory(prefix="darwin-track-space-") as tmp:
        folder = space_folder(project, Path(tmp))
        return Hub().deploy_space(space_repo, folder, variables={"TRACKIO_PROJECT": project}, secrets={},
                                  private=private, message=f"Search dashboard: {project}")
