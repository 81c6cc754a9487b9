"""The card's MRI and health charts, drawn like `release/card/plots.py` (Agg, fixed size, reproducible bytes)."""

from __future__ import annotations

from pathlib import Path

from matplotlib import style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from release.card.plots import DPI, FATHER_COLOR, FIGSIZE, FROZEN_COLOR, MOTHER_COLOR, save_figure


def plot_mri(r_mri: list[float], final: list[float] | None, frozen: list[int], low: float, high: float,
             path: Path) -> Path:
    """r_MRI per father layer (bars), the final ratio r (dots) when known, and the transplant thresholds."""
    with style.context("default"):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        layers = list(range(len(r_mri)))
        ax.bar(layers, r_mri, color=[FROZEN_COLOR if i in frozen else MOTHER_COLOR for i in layers], width=0.8,
               label="r_MRI (diagnosis)")
        if final is not None:
            ax.plot(layers, final, "o", color=FATHER_COLOR, label="final r")
        for y in (low, high):
            ax.axhline(y, color=FROZEN_COLOR, linestyle=":", linewidth=1)
        ax.set_xlim(-0.6, len(r_mri) - 0.4)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("father layer")
        ax.set_ylabel("mother share")
        ax.set_title(f"MRI: mother share by diagnosis (transplant below {low:g} / above {high:g})")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        return save_figure(fig, path)


def plot_health(layers: list[dict], path: Path, what: str = "FFN") -> Path:
    """Per layer: cosine of the child's FFN update (same-architecture: the whole layer's update, `what`) with
    the father's and the mother's; flagged in red."""
    with style.context("default"):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        idx = [row["layer"] for row in layers]
        ax.plot(idx, [row["cos_father"] for row in layers], "o-", color=FATHER_COLOR,
                label=f"cos(child {what}, father {what})")
        ax.plot(idx, [row["cos_mother"] for row in layers], "s--", color=MOTHER_COLOR,
                label=f"cos(child {what}, mother {what})")
        ax.plot(idx, [row["hidden_cos_father"] for row in layers], ".:", color=FROZEN_COLOR,
                label="cos(child hidden, father hidden)")
        for row in layers:
            if row["flagged"]:
                ax.axvspan(row["layer"] - 0.4, row["layer"] + 0.4, color="red", alpha=0.2)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("father layer")
        ax.set_ylabel("cosine similarity")
        ax.set_title("Health: the child against both parents (red = flagged)")
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        return save_figure(fig, path)
