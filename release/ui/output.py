"""What a person (or a CI log) sees while a run goes: stage lines, search lines, bars only in a terminal.

Written to a file, a run prints one line per stage (`[3/10] breed: ...`) and one per search generation,
and no library draws a progress bar (their carriage returns and cursor moves turn a log into noise). In
a terminal the bars stay, unless `--no-progress`. Library loggers that print with their own handler are
not printed a second time by ours.
"""

from __future__ import annotations

import logging
import os
import sys

from release.run.stages import STAGES

# Each library's own switch, read when it is imported (so set before the run imports them) ...
_QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub, and transformers, which follows it
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",  # tqdm's default for `disable`: lm-eval's and our own bars
}


def bars_wanted(asked: bool | None) -> bool:
    """`--progress` / `--no-progress` decide; otherwise bars only when both streams are a terminal."""
    if asked is not None:
        return asked
    return sys.stdout.isatty() and sys.stderr.isatty()


def set_progress_bars(asked: bool | None) -> bool:
    """Bars on or off for every library, as `bars_wanted` decides; returns whether they are on."""
    on = bars_wanted(asked)
    if not on:
        silence_progress_bars()
    elif asked:  # asked for in so many words: switches inherited from the environment give way
        for name in _QUIET_ENV:
            os.environ.pop(name, None)
    return on


def silence_progress_bars() -> None:
    os.environ.update(_QUIET_ENV)
    # ... and at run time, for those already imported.
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    if "transformers" in sys.modules:
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()


class _NotPrintedYet(logging.Filter):
    """huggingface_hub (and transformers on CI) print their records with their own handler *and* pass them
    up to the root one: drop those at the root so a warning appears once."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger = logging.getLogger(record.name)
        while logger is not None and logger.parent is not None:  # stop below the root
            if logger.handlers:
                return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


def configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        if handler not in before:  # ours only (a host such as pytest may have its own)
            handler.addFilter(_NotPrintedYet())
    # The HTTP client logs every URL at INFO, upload links with their one-time credentials among them.
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:  # lm-eval warns on every in-memory model it is handed, which is how we use it
        logging.getLogger("lm_eval").setLevel(logging.ERROR)


def stage_line(stage: str, what: str) -> None:
    print(f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}: {what}", flush=True)


class GenerationLines:
    """A search callback (release.search.SearchCallback's hooks) printing one line per generation, for runs
    without the search's bar."""

    def __init__(self, max_generations: int | None):
        self.of = f"/{max_generations}" if max_generations else ""

    def on_start(self, state, resumed: bool) -> None:
        if resumed:
            print(f"      resuming at generation {state.generation + 1} ({state.evaluations} evaluations done)",
                  flush=True)

    def on_candidate(self, line: dict) -> None:
        pass

    def on_generation(self, record: dict, state) -> None:
        print(f"      generation {record['generation'] + 1}{self.of}: best {record['best']:.4f}, "
              f"mean {record['mean']:.4f}, best so far {record['best_so_far']:.4f} "
              f"({state.evaluations} evaluations, {state.seconds:.0f} s)", flush=True)

    def on_end(self, result) -> None:
        pass
