"""`python -m release.zoo`: retrain the zoo in place (what `make zoo` runs), or check it.

    python -m release.zoo            retrain every model, rewrite the task files and SHA256SUMS
    python -m release.zoo --verify   check the committed files against SHA256SUMS (seconds)
    python -m release.zoo --check    retrain into a temporary folder and compare its bytes with SHA256SUMS
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one thread is the deterministic setting

from release.zoo import manifest  # noqa: E402

log = logging.getLogger("release.zoo")


def _retrain(root: Path) -> float:
    from release.zoo.build import build_zoo
    from release.zoo.tasks import write_tasks

    start = time.perf_counter()
    write_tasks(root / "tasks")
    build_zoo(root / "models")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.zoo", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true", help="check the committed files against SHA256SUMS")
    mode.add_argument("--check", action="store_true", help="retrain in a temp folder, compare with SHA256SUMS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    expected = manifest.read_manifest() if (args.verify or args.check) else None
    if args.verify:
        problems = manifest.differences(expected, manifest.digests())
    elif args.check:
        with tempfile.TemporaryDirectory() as tmp:
            seconds = _retrain(Path(tmp))
            problems = manifest.differences(expected, manifest.digests(Path(tmp)))
        log.info("retrained in %.0f s (load average %.1f)", seconds, os.getloadavg()[0])
    else:
        seconds = _retrain(manifest.ZOO_DIR)
        manifest.write_manifest()
        log.info("zoo retrained in %.0f s (load average %.1f); wrote %s", seconds, os.getloadavg()[0],
                 manifest.ZOO_DIR / manifest.MANIFEST)
        return 0
    for line in problems:
        print(f"error: zoo {line}", file=sys.stderr)
    if problems:
        return 1
    print(f"zoo: {len(expected)} files match {manifest.MANIFEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
