"""The lines a run ends with: what was released, its scores and verdict, and commands that work as printed
for this config (its store, its Space, its child), whatever the config is."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

HUB = "https://huggingface.co"


def closing_lines(summary: dict, config_path: str) -> list[str]:
    ran = ", ".join(summary.get("ran", summary.get("stages_run", []))) or "none (everything was up to date)"
    lines = []
    if "pull" in summary.get("ran", summary.get("stages_run", [])):  # this run's pull only
        for role, (fetched, total) in summary.get("fetched", {}).items():
            lines.append(f"pulled {role}: {fetched / 1e6:,.1f} MB of the repo's {total / 1e6:,.1f} MB "
                         "(only the shards the release reads)")
    lines.append(f"stages run: {ran}")
    if "child_repo" not in summary:
        return lines + _partial(summary)
    repo, rev, endpoint = summary["child_repo"], summary["child_revision"], summary["endpoint"]
    config = shlex.quote(config_path)
    lines += ["", f"released {repo} @ {rev[:12]} on {endpoint}"]
    push = summary.get("child_push") or {}
    if push.get("target") == "pr":
        lines.append(f"  as pull request {push['ref']}: {push['pr_url']} (merge it to publish the release on main)")
    elif push.get("target") == "branch":
        lines.append(f"  on branch {push['ref']} (main is unchanged)")
    if summary.get("space_repo"):
        lines.append(f"Space:    {summary['space_repo']} @ {summary['space_revision'][:12]}")
    lines += _scores(summary)
    env = ""
    if summary.get("local_root"):  # the run's embedded endpoint stopped with it
        lines += ["", "serve this config's store again (in another terminal; reading needs no token):",
                  f"  {_python()} -m release.localhub --root {shlex.quote(summary['local_root'])} "
                  f"--port {endpoint.rsplit(':', 1)[-1]}"]
    if endpoint.rstrip("/") != HUB:
        env = f"HF_ENDPOINT={endpoint} "
    trust = ", trust_remote_code=True" if summary.get("trust_remote_code", True) else ""
    lines += ["load it" + (" (with the store served):" if summary.get("local_root") else ":"),
              f"  {env}{_python()} -c \"from transformers import AutoModelForCausalLM; "
              f"AutoModelForCausalLM.from_pretrained('{repo}', revision='{rev}'{trust})\""]
    if summary.get("space_repo"):
        lines += ["chat with it on this machine:", f"  darwin-release space-serve {config}"]
    return lines


def _python() -> str:
    """`python` when that is this interpreter, else this interpreter's path: the line must work as printed."""
    on_path = shutil.which("python")
    same = on_path is not None and os.path.abspath(on_path) == os.path.abspath(sys.executable)
    return "python" if same else shlex.quote(sys.executable)


def _scores(summary: dict) -> list[str]:
    scores, stderrs = summary.get("scores") or {}, summary.get("stderr") or {}
    if not scores:
        return []
    items = summary.get("heldout_items")
    lines = [f"held-out scores{f' ({items} items the search never saw)' if items else ''}, ± standard error:"]
    for role, values in scores.items():
        cells = []
        for task, value in values.items():
            se = (stderrs.get(role) or {}).get(task)
            cells.append(f"{task} {value:.3f}" + (f" ± {se:.3f}" if se is not None else ""))
        lines.append(f"  {role:<7}" + "   ".join(cells))
    vigor = summary.get("vigor")
    if vigor:
        lines.append("  hybrid vigor: " + ("yes, the child beats both parents by more than the combined standard "
                                           "error" if vigor["claimed"] else f"not claimed: {vigor['reason']}"))
    return lines


def _partial(summary: dict) -> list[str]:
    """A run that stopped before the push (a stage subcommand, or --dry-run)."""
    import json

    lines = []
    if summary.get("dry_run"):
        lines.append(f"dry run: nothing written to the Hub (skipped {', '.join(summary['skipped'])})")
    if "child_folder" in summary:
        lines.append(f"child folder: {summary['child_folder']}")
    elif "breed" in summary:
        lines.append(f"best genome: {json.dumps([round(r, 4) for r in summary['breed']['genome']])} "
                     f"(fitness {summary['breed']['fitness']:.4f})")
    elif summary.get("mri"):
        mri = summary["mri"]
        lines.append(f"r_MRI: {json.dumps([round(r, 3) for r in mri['r_mri']])}; father-dominant layers "
                     f"{mri['father_dominant'] or 'none'}, mother-dominant {mri['mother_dominant'] or 'none'} "
                     f"(details: {mri['path']})")
    if summary.get("health"):
        h = summary["health"]
        lines.append("health check: " + ("passed" if h["passed"] else "FAILED: " + "; ".join(h["reasons"])))
    return lines
