"""The model card's two charts: the genome (ratio per layer) and fitness over generations.

Both are drawn with matplotlib's Agg backend on a standalone `Figure` (no pyplot, so no global figure
state and no GUI backend), with matplotlib's default style (a user's matplotlibrc cannot change the
picture), a fixed size and dpi, and no metadata that varies between runs: the same inputs give the
same PNG bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the pipeline runs on servers without a display

from matplotlib import style  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from release.run.files import atomic_path  # noqa: E402

FIGSIZE = (8.0, 3.6)  # inches
DPI = 100
# PNG text chunks matplotlib would add: "Software" carries the matplotlib version; drop it.
_METADATA = {"Software": None}

FATHER_COLOR = "#4c72b0"
MOTHER_COLOR = "#dd8452"
FROZEN_COLOR = "#999999"


def plot_genome(ratios: list[float], frozen: list[int], r_max: float, path: Path) -> Path:
    """Bar chart of the mother's share r_i per father layer; frozen layers drawn grey at 0."""
    with style.context("default"):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        layers = list(range(len(ratios)))
        colors = [FROZEN_COLOR if i in frozen else MOTHER_COLOR for i in layers]
        ax.bar(layers, ratios, color=colors, width=0.8)
        for i in frozen:
            ax.text(i, r_max * 0.02, "F", ha="center", va="bottom", fontsize=7, color=FROZEN_COLOR)
        ax.axhline(r_max, color=FATHER_COLOR, linestyle="--", linewidth=1)
        ax.text(-0.5, r_max * 1.01, f"r_max = {r_max:g}", va="bottom", fontsize=8, color=FATHER_COLOR)
        ax.set_xlim(-0.6, len(ratios) - 0.4)
        ax.set_ylim(0, r_max * 1.15)
        ax.set_xlabel("father layer")
        ax.set_ylabel("mother share r_i")
        ax.set_title("Genome: mother FFN share per layer (F = frozen at 0)")
        fig.tight_layout()
        return save_figure(fig, path)


def plot_fitness(generations: list[int], best: list[float], mean: list[float], path: Path) -> Path:
    """Best and mean fitness of each CMA-ES generation."""
    with style.context("default"):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(generations, best, marker="o", color=MOTHER_COLOR, label="best in generation")
        ax.plot(generations, mean, marker=".", color=FATHER_COLOR, linestyle="--", label="mean of generation")
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness (search subset)")
        ax.set_title("Fitness over generations")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        return save_figure(fig, path)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically (a temp file beside the target, then a rename)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=_METADATA)
    return Path(path)


def draw_genome_bars(ratios: list[float], frozen: list[int], r_max: float, path: Path) -> Path:
    """A small, unlabelled bar chart of the genome for the live dashboard: drawn with Pillow in about a
    millisecond, where `plot_genome` (the card's labelled chart) takes matplotlib ~100 ms, which is the
    tracker's whole cost per generation. Mother share per layer as bars, frozen layers grey, r_max dashed."""
    from PIL import Image, ImageDraw

    bar, gap, height, pad = 14, 4, 120, 6
    width = pad * 2 + len(ratios) * (bar + gap)
    image = Image.new("RGB", (width, height + 2 * pad), "white")
    draw = ImageDraw.Draw(image)
    top = r_max * 1.15
    for i, r in enumerate(ratios):
        x = pad + i * (bar + gap)
        y = pad + height - round(height * min(max(r, 0.0), top) / top)
        draw.rectangle([x, y, x + bar - 1, pad + height], fill=FROZEN_COLOR if i in frozen else MOTHER_COLOR)
    line = pad + height - round(height * r_max / top)
    for x in range(pad, width - pad, 8):
        draw.line([x, line, min(x + 4, width - pad), line], fill=FATHER_COLOR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
