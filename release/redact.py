"""Secrets out of what the tool prints or writes about a failure: every Hub token it can know of, and
anything shaped like one."""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

# Hub user tokens are hf_ + 34 letters and digits; api_ is the older form. Names such as hf_hub_download
# (an underscore after a few letters) are code, not tokens, and stay readable in a traceback.
TOKEN_SHAPED = re.compile(r"(?<![A-Za-z0-9])(?:hf_|api_)[A-Za-z0-9]{20,}")
_ENV_TOKENS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DARWIN_LOCALHUB_TOKEN", "LOCALHUB_TOKEN")


def _hf_home() -> Path:
    # huggingface_hub's own rule, without importing it (it must not be imported before HF_ENDPOINT is set)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")).expanduser()


def stored_tokens() -> list[str]:
    """Tokens `hf auth login` stored: the active one and every named one."""
    home = _hf_home()
    found = []
    token_file = Path(os.environ.get("HF_TOKEN_PATH") or home / "token")
    stored_file = Path(os.environ.get("HF_STORED_TOKENS_PATH") or home / "stored_tokens")
    try:
        found.append(token_file.read_text(encoding="utf-8", errors="replace").strip())
    except OSError:
        pass
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(stored_file, encoding="utf-8")
    except (OSError, configparser.Error):
        pass
    found += [parser[section].get("hf_token", "").strip() for section in parser.sections()]
    return [t for t in found if t]


def known_tokens() -> list[str]:
    tokens = [os.environ.get(name, "").strip() for name in _ENV_TOKENS] + stored_tokens()
    # Longest first, so a token that contains another is replaced whole. Very short values would
    # blank out ordinary words: a real token is never that short.
    return sorted({t for t in tokens if len(t) >= 8}, key=len, reverse=True)


def redact(text: str, tokens: list[str] | None = None) -> str:
    for token in known_tokens() if tokens is None else tokens:
        text = text.replace(token, "***")
    return TOKEN_SHAPED.sub("***", text)
