"""PNG plots of the AI's record for the Dagster UI (base64 Markdown images, like production/plots.py).

Two small figures per partition: the day's realized vs predicted quality of the AI's productions, and the
trailing window's comparison (the serving version vs each craftsman, raw and on the AI's lots).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from factory_assets.performance.compute import Comparison


def _png(fig: plt.Figure) -> bytes:
    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def predicted_vs_realized_png(productions: pl.DataFrame, title: str) -> bytes:
    """Scatter of the AI's predicted against realized QA quality, one production per point."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=80)
    data = productions.filter(
        (pl.col("match") == "model")
        & pl.col("qa_quality").is_not_null()
        & pl.col("predicted_quality").is_not_null()
    )
    ax.scatter(data["predicted_quality"].to_list(), data["qa_quality"].to_list(), s=6)
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("predicted quality", fontsize=7)
    ax.set_ylabel("realized QA quality", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)


def comparison_png(comparison: Comparison, title: str) -> bytes:
    """Bars: the judged AI version's realized quality vs each craftsman, raw mean and on the AI's lots."""
    fig, ax = plt.subplots(figsize=(5.0, 2.6), dpi=80)
    names = [comparison.judged_version or "AI"] + [c["set_by"] for c in comparison.craftsmen]
    raw = [comparison.ai_quality or 0.0] + [c["quality_mean"] for c in comparison.craftsmen]
    comparable = [comparison.ai_quality or 0.0] + [c["comparable_quality"] for c in comparison.craftsmen]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], raw, width=0.4, label="mean of own lots")
    ax.bar([i + 0.2 for i in x], comparable, width=0.4, label="on the AI's lots")
    ax.set_xticks(list(x), names, fontsize=6, rotation=20)
    ax.set_ylim(0, 100)
    ax.set_ylabel("QA quality", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="lower right")
    return _png(fig)
