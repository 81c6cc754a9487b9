"""Preflight: what the Hub would refuse at push time, checked before a release downloads anything.

`--plan` runs all of it and prints it; every `run` runs the value checks, and the token's write access
when it is going to push. Each failure is a one-line ReleaseError naming the key and the fix.

- `space.hardware`: one of huggingface_hub's `SpaceHardware` flavours;
- `card.license`: a licence identifier the Hub knows, or `other` with `card.license_name`;
- the token: who it is (whoami) and whether it may write the child's and the Space's namespaces, from its
  user name, its orgs and their roles, or a fine-grained token's scopes (the local endpoint answers
  whoami for its scoped tokens `--token T:alice,acme` the same way);
- the parents' licences (from their cards) and gating, for the plan: a child licence that differs from a
  parent's is a warning naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from release.config import ReleaseConfig
from release.errors import ReleaseError
from release.localhub.tokens import USER as LOCAL_USER

WRITE_ROLES_IN_ORG = frozenset({"admin", "write", "contributor"})


@lru_cache(maxsize=1)
def hub_licenses() -> frozenset[str]:
    return frozenset(yaml.safe_load((Path(__file__).parent / "hub_licenses.yaml").read_text(encoding="utf-8")))


def check_values(config: ReleaseConfig) -> list[str]:
    """Config values only the Hub judges (at push or deploy); returns the names of what was checked."""
    from huggingface_hub import SpaceHardware

    checked = []
    if config.space and config.space.hardware is not None:
        flavours = [h.value for h in SpaceHardware]
        if config.space.hardware not in flavours:
            raise ReleaseError(f"space.hardware {config.space.hardware!r} is not a Space hardware the Hub knows"
                               f"{_nearest(config.space.hardware, flavours)}; choose one of {', '.join(flavours)}")
        checked.append("space.hardware")
    card = config.card
    if card.license not in hub_licenses():
        raise ReleaseError(f"card.license {card.license!r} is not a Hub licence identifier"
                           f"{_nearest(card.license, sorted(hub_licenses()))}; use one from "
                           "https://huggingface.co/docs/hub/repositories-licenses, or license: other with "
                           "license_name and license_link")
    if card.license == "other" and not card.license_name:
        raise ReleaseError("card.license is other: name the licence in card.license_name (and link its text "
                           "in card.license_link)")
    checked.append("card.license")
    return checked


def _nearest(value: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- the token ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRights:
    user: str
    describe: str  # for people: "user alice (orgs acme), write token"

    namespaces: frozenset[str]  # namespaces it may write ...
    repos: frozenset[str] = frozenset()  # ... and single repos a fine-grained token may write

    def may_write(self, repo: str) -> bool:
        return repo.split("/")[0] in self.namespaces or repo in self.repos


def token_rights(who: dict) -> TokenRights:
    """What a whoami-v2 answer says the token may write."""
    user = who.get("name", "?")
    orgs = {o.get("name"): o.get("roleInOrg") for o in who.get("orgs") or [] if o.get("name")}
    token = ((who.get("auth") or {}).get("accessToken")) or {}
    role = token.get("role", "write")
    org_text = f" (orgs {', '.join(sorted(orgs))})" if orgs else ""
    if role == "fineGrained":
        namespaces, repos = set(), set()
        for scope in (token.get("fineGrained") or {}).get("scoped") or []:
            entity = scope.get("entity") or {}
            if "repo.write" in (scope.get("permissions") or []):
                (namespaces if entity.get("type") in ("user", "org") else repos).add(entity.get("name"))
        return TokenRights(user, f"user {user}{org_text}, fine-grained token", frozenset(namespaces), frozenset(repos))
    if role == "read":
        return TokenRights(user, f"user {user}{org_text}, read-only token", frozenset())
    writable = {user} | {org for org, r in orgs.items() if r is None or r in WRITE_ROLES_IN_ORG}
    return TokenRights(user, f"user {user}{org_text}, {role} token", frozenset(writable))


def _unscoped_local_token(who: dict, endpoint: str) -> bool:
    """The local hub's plain token (`--token T`) writes every namespace; its whoami names the hub's own user
    without orgs. (A local token scoped to that user alone answers the same: the push would then refuse.)"""
    from urllib.parse import urlsplit

    return (urlsplit(endpoint).hostname in ("127.0.0.1", "localhost") and who.get("name") == LOCAL_USER
            and not who.get("orgs"))


def check_write_access(config: ReleaseConfig, hub, required: bool = True) -> str:
    """One line for people on the token, or a ReleaseError naming the repo it cannot write. Without any
    token, `required=False` (the plan) says what the push will need instead of failing."""
    from huggingface_hub import get_token

    if config.hub.endpoint == "local":
        return "token: the embedded local endpoint's own, for this run (writes every namespace)"
    targets = [("child.repo", config.child.repo)] + ([("space.repo", config.space.repo)] if config.space else [])
    if not (hub.api.token if isinstance(hub.api.token, str) else get_token()):
        needs = f"a token with write access to {', '.join(sorted({r.split('/')[0] for _, r in targets}))}"
        if required:
            raise ReleaseError(f"no Hub token, and the release pushes {config.child.repo}: set HF_TOKEN to {needs}, "
                               "or run `hf auth login`")
        return f"token: none set; the push will need {needs} (HF_TOKEN or `hf auth login`)"
    who = hub.account()
    if _unscoped_local_token(who, hub.endpoint):
        return f"token: the local hub's unscoped token (writes every namespace) at {hub.endpoint}"
    rights = token_rights(who)
    for key, repo in targets:
        if not rights.may_write(repo):
            raise ReleaseError(f"{key} {repo}: the token ({rights.describe}) cannot write to {repo.split('/')[0]} "
                               f"on {hub.endpoint}; set HF_TOKEN to a token with write access there, or change "
                               f"{key}")
    return f"token: {rights.describe}; may write {', '.join(repo for _, repo in targets)}"


# --- the parents' terms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParentTerms:
    role: str
    repo: str
    license: str | None  # from the card's front matter (license_name when it is `other`)
    gated: str | bool

    def describe(self) -> str:
        gate = f"gated ({self.gated}: accept its terms on the Hub first)" if self.gated else "not gated"
        return f"{self.role:<7} {self.repo}: licence {self.license or 'not stated in its card'}, {gate}"


def parent_terms(config: ReleaseConfig, hub) -> list[ParentTerms]:
    out = []
    for role in ("father", "mother", "base"):
        ref = getattr(config, role, None)
        if ref is None:  # no common ancestor
            continue
        gated = hub.gating(ref.repo, ref.revision)  # first: fails fast where the card's download would retry
        card = hub.card_data(ref.repo, ref.revision) or {}
        licence = card.get("license")
        if licence == "other" and card.get("license_name"):
            licence = f"other ({card['license_name']})"
        out.append(ParentTerms(role, ref.repo, licence if isinstance(licence, str) else None, gated))
    return out


def licence_warnings(config: ReleaseConfig, parents: list[ParentTerms]) -> list[str]:
    """A child licence that differs from a parent's: the release may not be allowed to relicense it."""
    child = config.card.license if config.card.license != "other" else f"other ({config.card.license_name})"
    return [f"card.license {child} differs from the {p.role}'s licence {p.license} ({p.repo}): check that its "
            "terms allow releasing a derivative under yours" for p in parents if p.license and p.license != child]
