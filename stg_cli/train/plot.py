"""The loss curve of a run (``loss.png``), drawn with matplotlib's Agg backend."""

from __future__ import annotations

import json
from pathlib import Path

from stg_cli import files


def read_metrics(path: Path) -> list[dict]:
    """The lines of ``metrics.jsonl`` (empty when missing; broken lines are skipped)."""
    if not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_losses(rows: list[dict], path: Path) -> Path | None:
    """Total, global and local loss and the learning rate against the step; None if no rows."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.plot(steps, [row["loss"] for row in rows], label="total", color="black")
    for key, color in (("loss_global", "tab:blue"), ("loss_local", "tab:orange")):
        values = [row.get(key) for row in rows]
        if any(value is not None for value in values):
            axis.plot(steps, values, label=key.replace("loss_", ""), color=color)
    axis.set_xlabel("step")
    axis.set_ylabel("NCE loss")
    axis.grid(alpha=0.3)
    lr_axis = axis.twinx()
    lr_axis.plot(steps, [row["lr"] for row in rows], color="tab:gray", linestyle=":", label="lr")
    lr_axis.set_ylabel("learning rate")
    lines = axis.get_legend_handles_labels()
    lr_lines = lr_axis.get_legend_handles_labels()
    axis.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right")
    figure.tight_layout()
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
    return Path(path)
