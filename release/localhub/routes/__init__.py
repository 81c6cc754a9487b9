"""The local hub's HTTP side: one request in, one answer in the Hub's shape out.

It owns the routes huggingface_hub calls and nothing below them: storage is `release.localhub.store`
(and `xet` for Xet uploads), who may read what `access`, upload credentials `grants`, request bodies and
their limits `wire`, the server and its connections `server` (which imports this package, never the
other way). Modules here import those and `request`, never each other,
except `handler`, the URL table, which imports every resource module:

    request.py   plumbing every route shares: reading bodies, answering, errors, who is asking
    handler.py   the URL table: which function answers which method and path
    repos.py     create, delete, settings, info, tree listings, whoami
    spaces.py    Space variables, secrets and hardware
    commits.py   commits (streamed NDJSON), their history, preupload
    files.py     downloads (resolve, with ranges)
    uploads.py   LFS batch/upload/verify and the Xet CAS
    refs.py      branches, tags, pull requests

The client's source is the spec (hf_api.py, _commit_api.py, lfs.py, file_download.py, utils/_http.py).
"""
