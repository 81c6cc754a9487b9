"""Which folders lm-eval must index to load a task name, without indexing all of its ~14k YAMLs per run.

lm-eval's `TaskManager()` parses every YAML it ships (15 s on a loaded 2-core machine) before it can load
one task. We index only what a name needs:

1. the known folders: the user's `fitness.include_path`, the zoo's tasks (`release/zoo/tasks`, when
   present) and the run's generated task YAMLs; a name found there costs only their (small) index;
2. otherwise lm-eval's own tree, through a name -> YAML map made by a plain text scan of its task folder
   (~1 s), cached per lm-eval version in `$HF_HOME/darwin-release/`: a lookup then reads one JSON file.
   The TaskManager indexes the folders of the name and, for groups, of their members (a few rounds at
   most, each on the folders found so far);
3. a name the map does not hold falls back to lm-eval's full index once (exact, slow); a name no index
   holds is a one-line error with the closest names (difflib).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from importlib.metadata import version
from pathlib import Path

import lm_eval.tasks
from lm_eval.tasks import TaskManager

from release.errors import ReleaseError
from release.run.files import write_json
from release.zoo.tasks import TASKS_DIR as ZOO_TASKS  # the zoo's skills: always a known folder

log = logging.getLogger(__name__)

MAX_ROUNDS = 6  # group nesting depth followed across lm-eval's folders

_NAME = re.compile(r"^(task|group):[ \t]*[\"']?([^\s\"'#\[]+)", re.M)
_TAG_INLINE = re.compile(r"^tag:[ \t]*[\"']?([^\s\"'#\[]+)", re.M)
_TAG_LIST = re.compile(r"^tag:[ \t]*\n((?:[ \t]+-[ \t]*\S+[ \t]*\n?)+)", re.M)


def lm_eval_tasks_dir() -> Path:
    return Path(lm_eval.tasks.__file__).resolve().parent


def _cache_file() -> Path:
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
    return home / "darwin-release" / f"lm_eval-{version('lm_eval')}-task-files.json"


def scan_names(root: Path) -> dict[str, list[str]]:
    """name -> YAML files (relative to root) that define it as a task or group, or tag a task with it."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        names = [m.group(2) for m in _NAME.finditer(text)] + _TAG_INLINE.findall(text)
        for block in _TAG_LIST.findall(text):
            names += [line.split("-", 1)[1].strip().strip("\"'") for line in block.splitlines() if "-" in line]
        for name in dict.fromkeys(names):
            found.setdefault(name, []).append(path.relative_to(root).as_posix())
    return found


def builtin_files() -> dict[str, list[str]]:
    """lm-eval's own task names -> YAML files, cached per lm-eval version."""
    cache = _cache_file()
    if cache.is_file():
        try:
            return json.loads(cache.read_text(encoding="utf-8"))
        except ValueError:
            pass  # a damaged cache is rebuilt
    found = scan_names(lm_eval_tasks_dir())
    write_json(cache, found)
    log.info("indexed lm-eval's task names once (%d names): %s", len(found), cache)
    return found


def _members(entry) -> list[str]:
    """Names a group or tag index entry refers to."""
    if entry.cfg is None:
        return sorted(entry.tags)  # a tag: the tasks it names
    listed = entry.cfg.get("task") if "group" in entry.cfg else None
    out = []
    for item in listed if isinstance(listed, list) else []:
        name = item if isinstance(item, str) else (item.get("task") or item.get("group"))
        if isinstance(name, str):
            out.append(name)
    return out


def _outermost(folders: set[Path]) -> list[Path]:
    """Folders not inside another one of the set (indexing is recursive: nested ones would be read twice)."""
    return sorted(f for f in folders if not any(o != f and o in f.parents for o in folders))


def _manager(folders: list[Path]) -> TaskManager:
    return TaskManager(include_path=[str(f) for f in folders], include_defaults=False)


def resolve(names: list[str], known: list[Path], fixed: list[Path] = ()):
    """A TaskManager whose index holds every name in `names` and what their groups name.

    `known`: folders searched first (include_path, zoo, generated YAMLs); `fixed`: lm-eval folders already
    known to be needed (the click / musr aliases). Returns the manager.
    """
    known = [Path(k) for k in known if Path(k).is_dir()]
    folders = set(Path(f) for f in fixed)
    builtin: dict[str, list[str]] | None = None
    root = lm_eval_tasks_dir()
    manager = _manager(_outermost(folders) + known)
    for _ in range(MAX_ROUNDS):
        index = manager.task_index
        wanted, todo = set(names), list(names)
        while todo:  # the names, and what their groups and tags name, recursively
            name = todo.pop()
            for member in _members(index[name]) if name in index else []:
                if member not in wanted:
                    wanted.add(member)
                    todo.append(member)
        missing = sorted(n for n in wanted if n not in index and "::" not in n)
        if not missing:
            return manager
        builtin = builtin if builtin is not None else builtin_files()
        for name in names:
            if name not in index and name not in builtin:
                _unknown(name, list(index) + list(builtin))
        # A member no index names is an inline task of its group (defined there, not referenced).
        added = {(root / f).parent for n in missing for f in builtin.get(n, [])} - folders
        if not added:
            break
        folders |= added
        manager = _manager(_outermost(folders) + known)
    return _full_index(names, known)


def _unknown(name: str, candidates: list[str]) -> None:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else "see `lm_eval ls tasks`"
    raise ReleaseError(f"fitness.tasks: lm-eval knows no task, group or tag {name!r} ({hint}); or add the "
                       "folder of its YAML to fitness.include_path")


def _full_index(names: list[str], known: list[Path]):
    """lm-eval's complete index (slow: every YAML it ships), for a name the text scan placed in folders
    that do not define it after all (a YAML shape the scan does not read)."""
    log.info("indexing all of lm-eval's tasks for %s", ", ".join(names))
    manager = TaskManager(include_path=[str(k) for k in known] or None, include_defaults=True)
    for name in names:
        if name not in manager.task_index:
            _unknown(name, manager.all_tasks)
    return manager
