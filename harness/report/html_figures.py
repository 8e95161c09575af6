"""Figures of the HTML report drawn from the records alone: randomisation curves, stability, ROC curves.

Every figure is drawn on an Agg-backed ``matplotlib.figure.Figure`` (never pyplot, no windows, no
global state), titled with what it shows, and returned as ``(PNG bytes, title)`` for embedding. A figure whose
data the run did not record is ``None``: the report leaves it out instead of drawing an empty axis.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Record = Mapping[str, Any]


def png_bytes(figure: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _drawn(figure: Figure, title: str) -> tuple[bytes, str]:
    """Title the figure's axes and return ``(PNG bytes, title)``: the page's caption repeats the title."""
    figure.axes[0].set_title(title, fontsize=9)
    return png_bytes(figure), title


def _new_figure(width: float = 6.4, height: float = 3.8) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _label(record: Record) -> str:
    """``gradcam`` or ``random (control)``."""
    explainer = str(record.get("explainer") or "-")
    return f"{explainer} (control)" if record.get("role") == "control" else explainer


def randomisation_curves(model: str, records: Sequence[Record]) -> tuple[bytes, str] | None:
    """Similarity to the original maps after each randomised layer, one line per explainer; controls dashed.

    Reads ``details.curve`` (``[[layer, mean similarity], ...]``) of ``model_randomisation`` records.
    """
    curves = [r for r in records if (r.get("details") or {}).get("curve")]
    if not curves:
        return None
    fig, ax = _new_figure(7.0, 4.2)
    layers: list[str] = []
    for r in curves:
        points = [(str(name), value) for name, value in r["details"]["curve"]]
        layers = layers if len(layers) >= len(points) else [name for name, _ in points]
        ys = [math.nan if v is None else float(v) for _, v in points]
        ax.plot(range(len(ys)), ys, marker="o", ms=3, label=_label(r),
                linestyle="--" if r.get("role") == "control" else "-")
    details = curves[0]["details"]
    order = details.get("order", "cascading")
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel(f"randomised layer ({order}, from the output)" if order == "cascading" else "randomised layer")
    ax.set_ylabel(f"mean {details.get('similarity', 'similarity')} to original map")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(fontsize=8)
    return _drawn(fig, f"{model}: model randomisation, similarity of maps vs randomised layer (lower is better)")


def stability_points(model: str, records: Sequence[Record]) -> tuple[bytes, str] | None:
    """Value and 95% CI of each stability record (one point per perturbation), one series per explainer.

    A recorded ``details.curve`` is drawn as it is; otherwise the records' own values are the points.
    """
    rows = [r for r in records if r.get("category") == "stability" and r.get("value") is not None]
    if not rows:
        return None
    fig, ax = _new_figure(7.0, 4.2)
    names = list(dict.fromkeys(_perturbation(r) for r in rows))
    explainers = list(dict.fromkeys(_label(r) for r in rows))
    for e, explainer in enumerate(explainers):
        mine = [r for r in rows if _label(r) == explainer]
        xs = [names.index(_perturbation(r)) + 0.08 * (e - (len(explainers) - 1) / 2) for r in mine]
        ys = [float(r["value"]) for r in mine]
        low = [y - float(r["ci_low"]) if r.get("ci_low") is not None else 0.0 for y, r in zip(ys, mine)]
        high = [float(r["ci_high"]) - y if r.get("ci_high") is not None else 0.0 for y, r in zip(ys, mine)]
        ax.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, label=explainer)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("value (95% CI)")
    ax.legend(fontsize=8)
    return _drawn(fig, f"{model}: stability of the maps under each perturbation (value and 95% CI)")


def _perturbation(record: Record) -> str:
    details = record.get("details") or {}
    name = details.get("perturbation") or (f"radius {details['radius']}" if "radius" in details else None)
    return f"{record.get('check')}: {name}" if name else str(record.get("check"))


def roc_points(scores: Sequence[float | None],
               labels: Sequence[float | None]) -> tuple[list[float], list[float]] | None:
    """False- and true-positive rates at every distinct score threshold (ties stepped together), from (0, 0).

    ``None`` entries are dropped; ``None`` is returned when one class is missing (no curve exists).
    """
    import numpy as np

    pairs = [(float(s), float(y)) for s, y in zip(scores, labels) if s is not None and y is not None]
    if not pairs:
        return None
    s, y = np.array(pairs).T
    n_pos, n_neg = float((y == 1).sum()), float((y != 1).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s, hit = s[order], (y[order] == 1).astype(float)
    last_of_tie = np.append(s[1:] != s[:-1], True)
    tpr = np.concatenate([[0.0], np.cumsum(hit)[last_of_tie] / n_pos])
    fpr = np.concatenate([[0.0], np.cumsum(1 - hit)[last_of_tie] / n_neg])
    return fpr.tolist(), tpr.tolist()


def _roc_of(record: Record) -> tuple[list[float], list[float]] | None:
    """The ROC curve of a record: ``details.roc`` as recorded, or from the per-image scores and labels."""
    details = record.get("details") or {}
    if isinstance(details.get("roc"), Mapping):
        return list(details["roc"]["fpr"]), list(details["roc"]["tpr"])
    samples = details.get("samples") or {}
    if samples.get("statistic") == "auroc" and samples.get("scores") and samples.get("labels"):
        return roc_points(samples["scores"], samples["labels"])
    return None


def roc_curves(model: str, records: Sequence[Record]) -> tuple[bytes, str] | None:
    """ROC curves of the ``auroc`` records (``details.roc``, or the recorded per-image scores), with the AUROC."""
    rows = [(r, roc) for r in records if (roc := _roc_of(r)) is not None]
    if not rows:
        return None
    fig, ax = _new_figure(4.6, 4.2)
    for r, (fpr, tpr) in rows:
        auc = r.get("value")
        name = f"{r.get('check')} ({_label(r)})" if r.get("explainer") not in (None, "-") else str(r.get("check"))
        label = f"{name}: AUROC {auc:.3f}" if isinstance(auc, (int, float)) else name
        ax.plot(fpr, tpr, lw=1.6, label=label)
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, linestyle=":", label="chance")
    ax.set_xlim(-0.02, 1.02)  # a perfect curve runs along the axes: keep it visible
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=8, loc="lower right")
    split = (rows[0][0].get("details") or {}).get("split", "test")
    return _drawn(fig, f"{model}: ROC curve on the {split} split")
