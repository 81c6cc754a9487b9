"""Uploads of large files: the LFS batch API (a `basic` transfer whose PUT href carries its own one-time
credential, since the client sends no Authorization there) and the Xet CAS (xet.py does the decoding)."""

from __future__ import annotations

from release.localhub.errors import HubError
from release.localhub.routes.request import Request
from release.localhub.store import SHA256_RE, Repo
from release.localhub.xet import SHARD_MAX, XORB_MAX


def lfs_batch(req: Request, repo: Repo):
    body = req.json_body()
    if body.get("operation") != "upload":
        raise HubError(400, "The local hub's LFS batch API only handles uploads")
    objects = []
    for obj in body.get("objects") or []:
        oid, size = str(obj.get("oid")), obj.get("size")
        if not SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "oid must be a sha256 hex digest, size an int"}})
        elif req.hub.store.blob_ok(oid, size):
            objects.append({"oid": oid, "size": size})  # already stored: nothing to upload
        else:
            ticket = req.hub.new_ticket(oid, size)
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{req.base_url()}/api/lfs/upload/{oid}?size={size}&ticket={ticket}"},
                "verify": {"href": f"{req.base_url()}/api/lfs/verify"}}})
    return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}


def lfs_upload(req: Request, oid: str):
    ticket = (req.query.get("ticket") or [""])[0]
    size = (req.query.get("size") or [""])[0]
    if not size.isdigit() or not req.hub.ticket_ok(ticket, oid, int(size)):
        raise HubError(403, "Invalid or expired upload link: ask the LFS batch API for a new one")
    size = int(size)
    if req.body.length is not None and req.body.length != size:
        raise HubError(400, f"Content-Length {req.body.length} is not the object's size {size}")
    req.hub.store.put_stream(req.body.chunks(limit=size), oid, size)
    req.hub.spend_ticket(ticket)
    return 200, {}


def lfs_verify(req: Request):
    req.writer()
    body = req.json_body()
    size = body.get("size")
    if not isinstance(size, int) or not req.hub.store.blob_ok(str(body.get("oid")), size):
        raise HubError(422, f"LFS object {body.get('oid')} of size {body.get('size')} is not stored")
    return 200, {}


def xet_token(req: Request, repo: Repo, kind: str):
    token, expiry = req.hub.new_xet_token(write=kind == "xet-write-token")
    cas = f"{req.base_url()}/xet-cas"
    headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": expiry}
    return 200, {"casUrl": cas, "accessToken": token, "exp": expiry}, headers


def xet_cas(req: Request, s: list[str]):
    m = req.command
    write = m == "POST"
    if not req.hub.xet_token_ok(req.headers.get("Authorization", "").removeprefix("Bearer ").strip(), write):
        raise HubError(401, "Invalid or expired Xet token: ask /api/<repo>/xet-write-token for a new one")
    match [m, *s]:
        case ["POST", "v1", "xorbs", "default", name]:
            return 200, {"was_inserted": req.hub.xet.put_xorb(name, req.body.chunks(XORB_MAX))}
        case ["POST", "v1", "shards"]:
            req.hub.xet.put_shard(req.body.read(SHARD_MAX))
            return 200, {"result": 1}
        case ["GET", "v1", "chunks", _, _]:
            raise HubError(404, "Chunk not tracked by global deduplication")
    raise HubError(404, f"No such Xet route in the local hub: {m} /xet-cas/{'/'.join(s)}")
