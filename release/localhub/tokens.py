"""Write tokens and the namespaces each may write, as on the Hub (a user's own name and their orgs).

    LocalHub(root, tokens=["hf_a"])                        # a plain token may write every namespace
    LocalHub(root, tokens=["hf_b:alice,acme"])              # user alice, member of org acme
    LocalHub(root, tokens={"hf_c": ["alice", "acme"]})      # the same as a mapping
    python -m release.localhub --token hf_b:alice,acme

A scoped token's account is its first namespace; the others are its orgs (whoami shows them so).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from release.localhub.names import NAME_RE

USER = "darwin-local"


@dataclass(frozen=True)
class Account:
    name: str
    orgs: tuple[str, ...]
    namespaces: frozenset[str] | None  # None: every namespace (a plain token)

    def may_write(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces


def parse_token(spec: str) -> tuple[str, list[str] | None]:
    """`TOKEN` or `TOKEN:ns1,ns2` -> (token, namespaces or None)."""
    token, sep, namespaces = spec.partition(":")
    if not sep:
        return token, None
    names = [n.strip() for n in namespaces.split(",") if n.strip()]
    bad = [n for n in names if not NAME_RE.match(n)]
    if not token or not names or bad:
        raise ValueError(f"invalid token spec (namespaces {bad or names!r}): use TOKEN or TOKEN:namespace[,org...]")
    return token, names


class Tokens:
    def __init__(self, tokens: Iterable[str] | Mapping[str, Iterable[str] | None] = (), user: str = USER):
        if isinstance(tokens, Mapping):
            pairs = [(t, None if ns is None else [str(n) for n in ns]) for t, ns in tokens.items()]
        else:
            pairs = [parse_token(t) for t in tokens if t]
        self._accounts: list[tuple[bytes, Account]] = []
        for token, namespaces in pairs:
            if namespaces is not None and not namespaces:
                raise ValueError("a scoped token needs at least one namespace (its user name)")
            if namespaces is None:
                account = Account(user, (), None)
            else:
                account = Account(namespaces[0], tuple(namespaces[1:]), frozenset(namespaces))
            self._accounts.append((token.encode(), account))

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(known.decode() for known, _ in self._accounts)

    def account(self, token: str) -> Account | None:
        found = None
        for known, account in self._accounts:  # compare with every token: the time says nothing
            if hmac.compare_digest(token.encode(), known):
                found = account
        return found
