"""Small per-partition PNG plot (quality over the day) embedded as base64 Markdown.

Why base64 Markdown: the Dagster UI renders MetadataValue.md images inline, and an embedded PNG needs no
extra storage or web server. Kept small (about 20 KB) so the event log stays light.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl


def quality_plot_png(frame: pl.DataFrame, title: str) -> bytes:
    """Scatter of QA quality against production start, one colour per `set_by`."""
    fig, ax = plt.subplots(figsize=(6.0, 2.4), dpi=80)
    try:
        data = frame.filter(pl.col("qa_quality").is_not_null())
        for (who,), part in data.group_by(["set_by"], maintain_order=True):
            ax.scatter(part["start"].to_list(), part["qa_quality"].to_list(), s=6, label=str(who))
        ax.set_ylim(0, 100)
        ax.set_ylabel("QA quality")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if data.height:
            ax.legend(fontsize=6, loc="lower right")
        fig.autofmt_xdate()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})  # no version/time stamps
        return buf.getvalue()
    finally:
        plt.close(fig)


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown embedding the PNG inline."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
