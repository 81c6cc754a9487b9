"""Who may read what: the Hub's visibility rules, and which stored LFS objects a token may put in a repo.

A private repo is readable only by tokens that may write its namespace (anyone else gets 404, as if it
did not exist). LFS objects belong to the repos they were uploaded to: a commit, an LFS batch answer or a
Xet shard may reuse a stored object for another repo only when the token could download it anyway, so
no token can read, or learn of, an object through a repo it cannot read.
"""

from __future__ import annotations

from release.localhub.repo import Repo
from release.localhub.tokens import Account


def may_read(account: Account | None, repo: Repo) -> bool:
    return not repo.meta["private"] or (account is not None and account.may_write(repo.id.split("/")[0]))


def may_reuse(store, repo: Repo, account: Account | None, sha256: str) -> bool:
    """Whether `repo` may take the stored object `sha256` without it being uploaded to it."""
    return repo.has_object(sha256) or any(may_read(account, other) for other in store.holders(sha256))
