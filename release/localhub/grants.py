"""Short-lived upload credentials, each bound to the repo (and account) it was issued for.

LFS upload tickets ride in the PUT href the batch API hands out (the client sends no Authorization
there); Xet CAS tokens in the Authorization header of the CAS requests. What either uploads is recorded
as an object of that repo only.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from release.localhub.tokens import Account

TICKET_TTL_S = 3600


@dataclass(frozen=True)
class Grant:
    repo_type: str
    repo_id: str
    account: Account
    expiry: float
    oid: str = ""  # LFS tickets: the one object, of this size, they may upload
    size: int = 0
    write: bool = True  # Xet tokens: read-only or read-write


class Grants:
    def __init__(self):
        self._tickets: dict[str, Grant] = {}
        self._xet: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def new_ticket(self, repo, account: Account, oid: str, size: int) -> str:
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._tickets = {t: g for t, g in self._tickets.items() if g.expiry > time.time()}
            self._tickets[ticket] = Grant(repo.type, repo.id, account, time.time() + TICKET_TTL_S, oid, size)
        return ticket

    def ticket(self, ticket: str, oid: str, size: int) -> Grant | None:
        with self._lock:
            g = self._tickets.get(ticket)
        return g if g is not None and (g.oid, g.size) == (oid, size) and g.expiry > time.time() else None

    def spend_ticket(self, ticket: str) -> None:
        with self._lock:
            self._tickets.pop(ticket, None)

    def new_xet_token(self, repo, account: Account | None, write: bool) -> tuple[str, int]:
        token, expiry = "xet_" + secrets.token_urlsafe(24), int(time.time() + TICKET_TTL_S)
        with self._lock:
            self._xet = {t: g for t, g in self._xet.items() if g.expiry > time.time()}
            self._xet[token] = Grant(repo.type, repo.id, account, expiry, write=write)
        return token, expiry

    def xet_token(self, token: str, write: bool) -> Grant | None:
        with self._lock:
            g = self._xet.get(token)
        return g if g is not None and g.expiry > time.time() and (g.write or not write) else None
