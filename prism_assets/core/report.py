"""Tables and plots for people: Markdown tables and PNG figures that the UI and the CLI show."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from prism_assets.core.contracts import CTX_BUCKETS, SKILL_BUCKETS


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def counts_markdown(counts: Mapping[str, int], label: str) -> str:
    return markdown_table([label, "rows"], sorted(counts.items(), key=lambda kv: -kv[1])) if counts else "none"


def figure_axis(size: tuple[float, float] = (7, 3.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, dpi=90)


def figure_markdown(figure, title: str) -> str:
    """A matplotlib figure as a PNG embedded in Markdown, so the UI shows the plot beside the numbers."""
    import base64
    import io

    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def histogram_markdown(series: Mapping[str, Sequence[int]], title: str, xlabel: str) -> str:
    """Stacked histograms of several series (e.g. cluster sizes per ctx bucket)."""
    figure, axis = figure_axis()
    values = [v for v in series.values() if len(v)]
    if values:
        upper = max(max(v) for v in values)
        bins = range(1, upper + 2) if upper <= 40 else 40
        axis.hist([list(v) for v in series.values() if len(v)], bins=bins,
                  label=[k for k, v in series.items() if len(v)], stacked=True)
        axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("clusters")
    return figure_markdown(figure, title)


def grid_markdown(cells: Counter) -> str:
    """Skill × ctx grid of row counts as a Markdown table, with totals."""
    rows = []
    for skill in SKILL_BUCKETS:
        counts = [cells[(skill, ctx)] for ctx in CTX_BUCKETS]
        rows.append([skill, *counts, sum(counts)])
    rows.append(["total", *[sum(cells[(s, c)] for s in SKILL_BUCKETS) for c in CTX_BUCKETS], sum(cells.values())])
    return markdown_table(["skill \\ ctx", *CTX_BUCKETS, "total"], rows)
