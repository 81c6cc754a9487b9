"""`python -m release.localhub --root DIR --port PORT --token T`: serve a local hub in the foreground."""

import argparse
import logging
import os
import sys

from release.localhub.errors import StoreLocked
from release.localhub.server import CONNECTION_DEADLINE_S, MAX_CONNECTIONS, LocalHub


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m release.localhub", description=__doc__)
    p.add_argument("--root", required=True, help="folder holding the repos (created if missing)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token", action="append", default=[],
                   help="a token accepted for writes: TOKEN (every namespace) or TOKEN:user[,org...] (only "
                        "those namespaces, as on the Hub); repeatable; also read from LOCALHUB_TOKEN")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help="connections served at once; more get a 503 (default %(default)s)")
    p.add_argument("--connection-deadline", type=float, default=CONNECTION_DEADLINE_S,
                   help="seconds any one connection may stay open (default %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokens = args.token + ([os.environ["LOCALHUB_TOKEN"]] if os.environ.get("LOCALHUB_TOKEN") else [])
    try:
        hub = LocalHub(args.root, port=args.port, tokens=tokens, host=args.host, max_connections=args.max_connections,
                       connection_deadline=args.connection_deadline)
    except (StoreLocked, ValueError) as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: cannot serve on {args.host}:{args.port} ({e.strerror}): pick another --port")
    logging.getLogger("release.localhub").info(
        "serving %s at %s (%d write token(s)); set HF_ENDPOINT=%s", args.root, hub.url, len(tokens), hub.url)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.httpd.server_close()
        hub.store.close()


if __name__ == "__main__":
    main()
