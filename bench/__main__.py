"""`make bench` / `python -m bench [NAME ...]`: run the benchmarks, print ratios, write bench/results.json.

Each module's `run()` returns `{name: {"value", "unit", "target", ...}}`; results of modules not run this
time are kept from the previous file, so one benchmark can be rerun alone.
"""

import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

MODULES = ["bench_genome_switch", "bench_candidate_overhead", "bench_child_inference", "bench_scorer",
           "bench_scaleout", "bench_tracking", "bench_emit_memory", "bench_pull_check",
           "bench_scorer_memory", "bench_same_arch", "bench_mri", "bench_plan", "bench_estimators",
           "bench_any_task", "bench_method"]
RESULTS = Path(__file__).with_name("results.json")


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)
    chosen = argv or MODULES
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in chosen:
        t0 = time.monotonic()
        print(f"== {name}", flush=True)
        results.update(importlib.import_module(f"bench.{name}").run())
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
