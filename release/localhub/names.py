"""What the local hub accepts as a repo id and as a file path inside a repo: the Hub's rules, strictly.

Both come from clients and become folder names or tree keys, so anything ambiguous is refused with a 400.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from release.localhub.errors import HubError

REPO_TYPES = ("model", "dataset", "space")
# huggingface_hub's validate_repo_id: word characters, '-' and '.', at most 96, starting and ending with a
# word character, no '--' or '..'. (ASCII only here: these become folder names.)
NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")
# What a serialised missing value looks like: `f"{ns}/{None}"` must not become a repo.
RESERVED_NAMES = {"null", "none", "undefined", "nan"}
MAX_PATH_CHARS = 1000
# git check-ref-format, a little stricter: no '..', '//', '@{', control or special characters, no
# leading '/', '-' or '.', no trailing '/', '.' or '.lock'; and a plain name, never a full 'refs/...'.
REF_NAME_RE = re.compile(r"^(?!refs/)(?!.*(?:\.\.|//|@\{|/\.|\.lock$|[/.]$))[A-Za-z0-9_][^\x00-\x20\x7f~^:?*\[\\]{0,199}$")


def check_repo_id(repo_type: str, repo_id: str) -> tuple[str, str]:
    """(namespace, name) of a valid `namespace/name`, else a 400 naming the rule it breaks."""
    if repo_type not in REPO_TYPES:
        raise HubError(400, f"Invalid repo type {repo_type!r}: use one of {', '.join(REPO_TYPES)}")
    ns, slash, name = str(repo_id).partition("/")
    for part in (ns, name):
        if not slash or not NAME_RE.match(part) or "--" in part or ".." in part or part.lower() in RESERVED_NAMES:
            raise HubError(400, f"Invalid repo id {str(repo_id)[:200]!r}: use 'namespace/name' made of letters, "
                                "digits, '-', '_' and '.' (at most 96 each, no '--' or '..', not 'null')")
    return ns, name


def check_path(path: str) -> str:
    """A relative file path in a repo; refuses NUL and control characters, '.git' folders, '.' and '..'
    segments (also when percent-decoded), backslashes and absolute paths."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise HubError(400, f"Invalid path in repo: {str(path)[:200]!r}")
    forms = [path]
    for _ in range(3):  # '%2e%2e', '%252e%252e', ...: a segment must be harmless however often it is decoded
        forms.append(unquote(forms[-1]))
    bad = (path.startswith("/") or any(p == "" for p in path.split("/"))
           or any("\\" in f or any(ord(c) < 32 or c == "\x7f" for c in f) for f in forms)
           or any(p in (".", "..", ".git") for f in forms for p in f.split("/")))
    if bad:
        raise HubError(400, f"Invalid path in repo: {path[:200]!r} (no '.', '..' or '.git' segments, control "
                            "characters or backslashes)")
    return path


def check_ref_name(kind: str, name) -> str:
    """A branch or tag name as git accepts it (and as a plain name, not 'refs/...'), else a 400."""
    if not isinstance(name, str) or not REF_NAME_RE.match(name):
        raise HubError(400, f"Invalid {kind} name {str(name)[:200]!r}: use letters, digits, '-', '_', '.' and '/' "
                            "(no '..', spaces or 'refs/...')")
    return name
