"""`darwin-release`: one subcommand per pipeline stage, and `run` for all of them.

Output here is for people; logs go through `logging` (`-v` shows them). A ReleaseError is printed as
its one line, without a traceback, and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading

from release import __version__
from release.config import load_config
from release.errors import ReleaseError
from release.redact import known_tokens, redact
from release.run.stages import HUB_STAGES, STAGE_HELP, STAGES
from release.ui.closing import closing_lines
from release.ui.output import configure_logging, set_progress_bars
from release.ui.schema import config_schema, reference_markdown
from release.ui.starter import write_starter


EXAMPLES = """\
examples:
  darwin-release run configs/default.yaml        the embedded default: tiny parents, a local Hub, CPU only
  darwin-release init my-release.yaml            a commented starter config (--same-arch: a weight merge)
  darwin-release run my-release.yaml --plan      check the config, the token and the parents; print the
                                                 cost; downloads no weights, writes nothing
  darwin-release run my-release.yaml             every stage; a rerun skips what is done and unchanged
  darwin-release breed my-release.yaml --resume  the stages up to the search, continuing a stopped one
  darwin-release run my-release.yaml --force card --force push   render the card again and push it
  darwin-release space-serve my-release.yaml     chat with the released child on 127.0.0.1:7860
  darwin-release schema > config.schema.json     the config's JSON Schema, for editors

every config key: docs/config.md"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="darwin-release", epilog=EXAMPLES,
                                description="Breed a child model from two Hub parents and release it: one "
                                            "subcommand per pipeline stage, and `run` for all of them.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"darwin-release {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run every stage (skipping those already done and unchanged)",
                         description="Run every stage in order: " + " -> ".join(STAGES) + ". A stage whose inputs "
                                     "have not changed since it last ran is skipped.")
    for name in STAGES:
        stage = sub.add_parser(name, help=STAGE_HELP[name],
                               description=f"{name}: {STAGE_HELP[name]}. Runs the stages before it first, unless "
                                           "they are up to date.")
        stage.set_defaults(only=(name,))
    for sp in [run, *(sub.choices[s] for s in STAGES)]:
        sp.add_argument("config", help="release config (YAML), e.g. configs/default.yaml")
        sp.add_argument("--force", action="append", default=[], metavar="STAGE", choices=[*STAGES, "all"],
                        help=f"redo STAGE even if it is up to date (repeatable): {', '.join(STAGES)}, or all")
        sp.add_argument("--dry-run", action="store_true",
                        help="run every stage but those that write to the Hub (" + ", ".join(HUB_STAGES) + ")")
        sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only when the output is a terminal; otherwise one line per "
                             "stage and per search generation)")
        sp.add_argument("-v", "--verbose", action="store_true", help="show logs")
        sp.add_argument("--json", action="store_true",
                        help="print the summary as JSON on stdout (for scripts); progress goes to stderr")
    run.add_argument("--plan", action="store_true",
                     help="only check and plan: the config, the token's write access, the parents (configs, "
                          "safetensors headers and cards, no weights), the cost and the stages; writes nothing "
                          "(--dry-run --plan is the same)")
    run.add_argument("--gpu", metavar="NAME", help="with --plan: estimate time on this GPU (H200, H100, A100, L40S)")
    run.set_defaults(only=STAGES)
    sub.choices["breed"].add_argument("--resume", action="store_true",
                                      help="continue an interrupted search from its last checkpoint")

    init = sub.add_parser("init", help="write a commented starter config",
                          description="Write a commented starter config to edit, then check it with "
                                      "`darwin-release run CONFIG --plan`.")
    init.add_argument("path", nargs="?", default="release.yaml", help="where to write it (default: release.yaml)")
    init.add_argument("--same-arch", action="store_true",
                      help="two parents of one architecture, merged by weights (dare_ties), instead of the "
                           "cross-architecture FFN blend")
    init.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    schema = sub.add_parser("schema", help="print the config's JSON Schema (or its reference page)",
                            description="Print the release config's JSON Schema, generated from its models; "
                                        "YAML language servers read it (`# yaml-language-server: "
                                        "$schema=config.schema.json`).")
    schema.add_argument("--markdown", action="store_true", help="print the reference page (docs/config.md) instead")

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
    again.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bars (default: only when the output is a terminal)")
    again.add_argument("-v", "--verbose", action="store_true", help="show logs")

    mk = sub.add_parser("import-mergekit", help="turn a two-model mergekit YAML or a mergekit-evolve config into a "
                                                "darwin-release config; what does not map is listed")
    mk.add_argument("file", metavar="FILE", help="mergekit YAML (merge_method, models) or mergekit-evolve config")
    mk.add_argument("-o", "--output", metavar="CONFIG", help="write the config here (default: print it)")
    mk.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="accepted as by every subcommand (this one shows no bars)")
    mk.add_argument("-v", "--verbose", action="store_true", help="show logs")

    serve = sub.add_parser("space-serve", help="serve the Space app locally against the last released child",
                           description="Serve the Space app on 127.0.0.1 with the child this config released last "
                                       "(for a local endpoint, its store is served meanwhile).")
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
    configure_logging(getattr(args, "verbose", False))
    for handler in logging.getLogger().handlers:  # a token quoted in a log message (or its traceback) is hidden
        if _redact_record not in handler.filters:
            handler.addFilter(_redact_record)
    progress = set_progress_bars(getattr(args, "progress", None))
    try:
        if args.command == "reproduce":
            return _reproduce(args, progress)
        if args.command == "import-mergekit":
            return _import_mergekit(args)
        if args.command in ("init", "schema"):
            return _init(args) if args.command == "init" else _schema(args)
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
                          progress=progress, only=tuple(args.only))
        # --json: stdout is the summary alone; what the run prints on the way goes to stderr
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
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
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print("\n".join(closing_lines(summary, args.config)))
    return 0


def _init(args) -> int:
    path = write_starter(args.path, same_arch=args.same_arch, overwrite=args.force)
    print(f"wrote {path}: set father, mother, child and space, then check it with: darwin-release run {path} --plan")
    return 0


def _schema(args) -> int:
    print(reference_markdown() if args.markdown else json.dumps(config_schema(), indent=2), end="" if args.markdown else "\n")
    return 0


def _reproduce(args, progress: bool) -> int:
    """0: reproduced bit for bit; 1: the first differing tensor is printed."""
    from release.hub.reproduce import reproduce  # loaded when the subcommand runs: --help stays instant
    from release.hub.session import open_hub

    if args.config:
        with open_hub(load_config(args.config)) as session:
            result = reproduce(session.hub, args.target, progress=progress)
    else:
        from release.hub.client import Hub  # huggingface_hub reads HF_ENDPOINT when first imported: only now

        result = reproduce(Hub(), args.target, progress=progress)
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


def _print_plan(config, args) -> int:
    from release.plan.gpus import GPUS  # loaded when the subcommand runs: --help stays instant
    from release.plan.report import print_plan  # loaded when the subcommand runs: --help stays instant

    if args.gpu and args.gpu not in GPUS:
        raise ReleaseError(f"--gpu {args.gpu}: unknown GPU; choose one of {', '.join(GPUS)}")
    return print_plan(config, args.config, args.dry_run, gpu=args.gpu)
