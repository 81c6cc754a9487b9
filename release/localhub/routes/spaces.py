"""Space settings: variables, secrets (write-only values, as on the Hub) and hardware."""

from __future__ import annotations

from release.localhub import shapes
from release.localhub.errors import HubError
from release.localhub.routes.request import Request
from release.localhub.repo import Repo, now


def table(req: Request, space: Repo, kind: str):
    if req.command == "GET":
        entries = space.meta[kind]
    elif req.command == "POST":
        body = req.json_body()
        if not body.get("key"):
            raise HubError(400, f"A Space {kind[:-1]} needs a key")
        entries = space.set_entry(kind, body["key"], {"value": str(body.get("value", "")),
                                                      "description": body.get("description"), "updatedAt": now()})
    else:
        entries = space.set_entry(kind, req.json_body().get("key", ""), None)
    if kind == "secrets":  # like the Hub: secret values are write-only
        entries = {k: {"description": v.get("description"), "updatedAt": v["updatedAt"]} for k, v in entries.items()}
    return 200, entries


def hardware(req: Request, space: Repo):
    space.update_meta(hardware=req.json_body().get("flavor") or "cpu-basic")
    return 200, shapes.space_runtime(space)
