"""`darwin-release`: one subcommand per pipeline stage, and `run` for all of them.

Output here is for people; logs go through `logging` (`-v` shows them). A ReleaseError is printed as
its one line, without a traceback, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from release import __version__
from release.config import load_config
from release.errors import ReleaseError
from release.redact import known_tokens, redact
from release.run.stages import STAGES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="darwin-release", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"darwin-release {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage (skipping those already done and unchanged)")
    for name in STAGES:
        stage = sub.add_parser(name, help=f"run the pipeline up to and including '{name}'")
        stage.set_defaults(only=(name,))
    for sp in [run, *(sub.choices[s] for s in STAGES)]:
        sp.add_argument("config", help="release config (YAML), e.g. configs/default.yaml")
        sp.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help="redo STAGE even if it is up to date (repeatable; 'all' redoes every stage)")
        sp.add_argument("--dry-run", action="store_true", help="do everything except writing to the Hub")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        sp.add_argument("-v", "--verbose", action="store_true", help="show logs")
    run.add_argument("--plan", action="store_true",
                     help="check the config and the parents (configs and safetensors headers only, no weights), "
                          "print what the release will cost and the planned stages")
    run.add_argument("--gpu", metavar="NAME", help="with --plan: estimate time on this GPU (H200, H100, A100, L40S)")
    run.set_defaults(only=STAGES)
    sub.choices["breed"].add_argument("--resume", action="store_true",
                                      help="continue an interrupted search from its last checkpoint")

    watch = sub.add_parser("watch", help="open the search's live dashboard (trackio) on 127.0.0.1")
    watch.add_argument("config")
    watch.add_argument("--port", type=int, default=None, help="port (default: the first free from 7860)")
    watch.add_argument("--no-browser", action="store_true", help="only print the dashboard's address")
    watch.add_argument("-v", "--verbose", action="store_true")

    again = sub.add_parser("reproduce", help="rebuild a published child from its darwin_genome.json and the "
                                             "parents' recorded commits, and compare every tensor's bytes")
    again.add_argument("target", metavar="REPO[@REV]", help="the child repo, optionally @branch or @commit")
    again.add_argument("--config", help="take the Hub from this release config (its endpoint, or its local store, "
                                        "served meanwhile); default: HF_ENDPOINT or the Hub")
    again.add_argument("--no-progress", action="store_true", help="no progress bars")
    again.add_argument("-v", "--verbose", action="store_true", help="show logs")

    mk = sub.add_parser("import-mergekit", help="turn a two-model mergekit YAML or a mergekit-evolve config into a "
                                                "darwin-release config; what does not map is listed")
    mk.add_argument("file", metavar="FILE", help="mergekit YAML (merge_method, models) or mergekit-evolve config")
    mk.add_argument("-o", "--output", metavar="CONFIG", help="write the config here (default: print it)")
    mk.add_argument("--no-progress", action="store_true", help="no progress bars (there are none: for scripts)")
    mk.add_argument("-v", "--verbose", action="store_true", help="show logs")

    serve = sub.add_parser("space-serve", help="serve the Space app locally against the last released child")
    serve.add_argument("config")
    serve.add_argument("--port", type=_port, default=7860)
    serve.add_argument("-v", "--verbose", action="store_true")
    return p


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535")
    return int(text)


class Terminated(KeyboardInterrupt):
    """SIGTERM, stopping the run as Ctrl-C does: cleanup runs, the last checkpoint stays whole."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a token quoted in a log message (or its traceback) is hidden
        if _redact_record not in handler.filters:
            handler.addFilter(_redact_record)
    # The HTTP client logs every URL at INFO, upload links with their one-time credentials among them.
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:  # lm-eval warns on every in-memory model it is handed, which is how we use it
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
    if getattr(args, "no_progress", False):
        _no_progress_bars()
    try:
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "import-mergekit":
            return _import_mergekit(args)
        config = load_config(args.config)
        if args.command == "watch":
            from release.search.tracking import open_dashboard  # imports cma and matplotlib

            if not config.search.track:
                print(f"note: search.track is off in {args.config}: the dashboard shows only earlier tracked runs")
            open_dashboard(config.name, port=args.port, open_browser=not args.no_browser)
            return 0
        if args.command == "space-serve":
            from release.hub.space import serve_last_release  # loaded when the subcommand runs: --help stays instant

            return serve_last_release(config, port=args.port)
        if getattr(args, "plan", False):
            return _print_plan(config, args)
        from release.pipeline import RunOptions, run_release  # loaded when the subcommand runs: --help stays instant

        # `run` resumes an interrupted search by itself; `breed` alone does so when asked.
        resume = args.command == "run" or getattr(args, "resume", False)
        opts = RunOptions(force=set(args.force), dry_run=args.dry_run, resume=resume,
                          progress=not args.no_progress, only=tuple(args.only))
        summary = run_release(config, opts)
    except ReleaseError as e:
        print(f"error: {redact(_one_line(str(e)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        again = "breed again with --resume" if args.command == "breed" else "the same command again"
        print(f"interrupted: run {again} to continue where it stopped", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    except Exception as e:  # no check foresaw it: still one line, the traceback kept in a file
        print(f"error: {_unexpected(e, args.verbose)}", file=sys.stderr)
        return 1
    _print_summary(summary)
    return 0


def _reproduce(args) -> int:
    """0: reproduced bit for bit; 1: the first differing tensor is printed."""
    from release.hub.reproduce import reproduce  # loaded when the subcommand runs: --help stays instant
    from release.hub.session import open_hub

    if args.config:
        with open_hub(load_config(args.config)) as session:
            result = reproduce(session.hub, args.target, progress=not args.no_progress)
    else:
        from release.hub.client import Hub  # huggingface_hub reads HF_ENDPOINT when first imported: only now

        result = reproduce(Hub(), args.target, progress=not args.no_progress)
    for note in result.notes:
        print(f"note: {note}")
    print(result.summary())
    return 0 if result.identical else 1


def _import_mergekit(args) -> int:
    from pathlib import Path

    from release.breeders.mergekit_in import config_yaml, import_mergekit, read_mergekit  # imports torch (breeders)
    from release.run.files import write_atomic

    name = Path(args.output).stem if args.output else Path(args.file).stem
    config, notes = import_mergekit(read_mergekit(args.file), name.replace(" ", "-"))
    text = config_yaml(config, Path(args.file).name, notes)
    if not args.output:
        print(text, end="")
        return 0
    write_atomic(args.output, text)
    print(f"wrote {args.output} ({config['breed']['method']}: father {config['father']['repo']}, mother "
          f"{config['mother']['repo']})")
    for note in notes:
        print(f"not mapped: {note}")
    return 0


def _redact_record(record: logging.LogRecord) -> bool:
    record.msg, record.args = redact(record.getMessage()), None
    if record.exc_info:
        import traceback

        record.exc_text, record.exc_info = redact("".join(traceback.format_exception(*record.exc_info))).rstrip(), None
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def _unexpected(e: Exception, verbose: bool) -> str:
    """One line for an error no check foresaw; the traceback goes to a file it names (and stderr with -v)."""
    import os
    import tempfile
    import traceback

    # A token never reaches the screen or a file: the environment's, `hf auth login`'s, or any token-shaped text.
    tokens = known_tokens()
    trace, reason = redact(traceback.format_exc(), tokens), redact(f"{type(e).__name__}: {e}", tokens)
    if verbose:
        print(trace, file=sys.stderr, end="")
    fd, path = tempfile.mkstemp(prefix="darwin-release-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(trace)
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        what = "out of memory: lower fitness.batch_size, or use a device with more memory"
    elif isinstance(e, OSError):
        what = "a system error (disk space, permissions or the network): fix it and run the same command again"
    else:
        what = "a bug in darwin-release, please report it"
    return f"{_one_line(reason)[:300]}: {what} (the traceback is in {path})"


def _no_progress_bars() -> None:
    """Silence huggingface_hub's download/upload bars too. Through the environment, because the Hub
    client must not be imported before the run points HF_ENDPOINT at its Hub."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _print_plan(config, args) -> int:
    from release.plan.gpus import GPUS  # loaded when the subcommand runs: --help stays instant
    from release.plan.report import print_plan  # loaded when the subcommand runs: --help stays instant

    if args.gpu and args.gpu not in GPUS:
        raise ReleaseError(f"--gpu {args.gpu}: unknown GPU; choose one of {', '.join(GPUS)}")
    return print_plan(config, args.config, args.dry_run, gpu=args.gpu)


def _print_summary(summary: dict) -> None:
    ran = ", ".join(summary.get("ran", summary.get("stages_run", []))) or "none (everything was up to date)"
    for role, (fetched, total) in summary.get("fetched", {}).items():
        print(f"pulled {role}: {fetched / 1e6:,.1f} MB of the repo's {total / 1e6:,.1f} MB "
              "(only the shards the release reads)")
    if "child_repo" not in summary:
        print(f"stages run: {ran}")
        if summary.get("dry_run"):
            print(f"dry run: nothing written to the Hub (skipped {', '.join(summary['skipped'])})")
        if "child_folder" in summary:
            print(f"child folder: {summary['child_folder']}")
        elif "breed" in summary:
            print(f"best genome: {json.dumps([round(r, 4) for r in summary['breed']['genome']])} "
                  f"(fitness {summary['breed']['fitness']:.4f})")
        elif summary.get("mri"):
            mri = summary["mri"]
            print(f"r_MRI: {json.dumps([round(r, 3) for r in mri['r_mri']])}; father-dominant layers "
                  f"{mri['father_dominant'] or 'none'}, mother-dominant {mri['mother_dominant'] or 'none'} "
                  f"(details: {mri['path']})")
        if summary.get("health"):
            h = summary["health"]
            print("health check: " + ("passed" if h["passed"] else "FAILED: " + "; ".join(h["reasons"])))
        return
    print(f"stages run: {ran}")
    repo, rev, endpoint = summary["child_repo"], summary["child_revision"], summary["endpoint"]
    print(f"\nreleased {repo} @ {rev[:12]} on {endpoint}")
    push = summary.get("child_push") or {}
    if push.get("target") == "pr":
        print(f"  as pull request {push['ref']}: {push['pr_url']} (merge it to publish the release on main)")
    elif push.get("target") == "branch":
        print(f"  on branch {push['ref']} (main is unchanged)")
    if summary.get("space_repo"):
        print(f"Space:    {summary['space_repo']} @ {summary['space_revision'][:12]}")
    for role, scores in summary.get("scores", {}).items():
        print(f"  {role:<7}" + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    print("\nload it:")
    print(f"  HF_ENDPOINT={endpoint} python -c \"from transformers import AutoModelForCausalLM; "
          f"AutoModelForCausalLM.from_pretrained('{repo}', revision='{rev}'"
          + (", trust_remote_code=True" if summary.get("trust_remote_code", True) else "") + ")\"")
    print("chat with it: make space" + ("   (the local store is served again by: make hub)"
                                         if "127.0.0.1" in endpoint else ""))
