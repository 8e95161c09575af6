"""Heatmap overlays: a grid of cases, each a radiograph with its saliency map and mask contours.

Rendering uses ``matplotlib.figure.Figure`` with the Agg canvas directly, never pyplot, so it
neither opens windows nor changes the user's matplotlib backend or global figure registry.
matplotlib is imported only when an overlay is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LESION_COLOUR = "white"
ARTIFACT_COLOUR = "magenta"


@dataclass(frozen=True, kw_only=True, eq=False)  # arrays do not compare or hash
class Overlay:
    """K cases of one model and explainer, ready to draw; arrays may be numpy or torch.

    Arrays of shape ``[K,1,H,W]`` (the explainer contract) or ``[H,W]`` (one case) are accepted
    and stored as numpy ``[K,H,W]``; RGB images ``[K,3,H,W]`` are averaged to grayscale. Maps and
    masks may have another resolution than the images: they are stretched over the image.

    Attributes:
        model: Model name, as in the check records.
        explainer: Explainer name.
        images: Float images in [0, 1], ``[K,H,W]``.
        maps01: Saliency maps normalised to [0, 1], ``[K,h,w]``; NaN is drawn as 0.
        lesion_masks: Boolean lesion masks ``[K,h,w]``, drawn as a contour.
        labels: K class labels (ints or names) shown in the captions.
        scores: K model scores (e.g. the probability of the label) shown in the captions.
        artifact_masks: Optional boolean artifact masks ``[K,h,w]``, drawn in another colour.
        title: Figure title; default ``"<model> / <explainer>"``.
        captions: Optional K case captions that say what each panel shows (e.g. ``"mean Grad-CAM,
            positives (n=154)"``); default ``"label <label> | score <score>"``.
    """

    model: str
    explainer: str
    images: Any
    maps01: Any
    lesion_masks: Any
    labels: Sequence[Any]
    scores: Sequence[float]
    artifact_masks: Any | None = None
    title: str = ""
    captions: Sequence[str] | None = None

    def __post_init__(self) -> None:
        images = _cases(self.images, "images", rgb_to_gray=True).astype(np.float32)
        k = images.shape[0]
        if k == 0:
            raise ValueError("Overlay needs at least one case")
        arrays = {
            "images": images,
            "maps01": _cases(self.maps01, "maps01").astype(np.float32),
            "lesion_masks": _cases(self.lesion_masks, "lesion_masks").astype(bool),
            "labels": [_label(x) for x in _flat(self.labels)],
            "scores": [_score(x) for x in _flat(self.scores)],
        }
        if self.captions is not None:
            arrays["captions"] = [str(c) for c in self.captions]
        if self.artifact_masks is not None:
            arrays["artifact_masks"] = _cases(self.artifact_masks, "artifact_masks").astype(bool)
        for name, value in arrays.items():
            if len(value) != k:
                raise ValueError(f"Overlay.{name} has {len(value)} cases, images has {k}")
            object.__setattr__(self, name, value)
        if not self.title:
            object.__setattr__(self, "title", f"{self.model} / {self.explainer}")

    @property
    def n_cases(self) -> int:
        """The number of cases K."""
        return int(self.images.shape[0])


def overlay_figure(
    overlay: Overlay, *, cmap: str = "jet", alpha: float = 0.45, ncols: int = 4, cell_inches: float = 2.6
) -> Figure:
    """Draw ``overlay`` as a grid on a new Agg-backed figure (no pyplot, no global state).

    Args:
        overlay: The cases to draw.
        cmap: Colormap of the saliency map (``jet`` or ``inferno`` read well on radiographs).
        alpha: Opacity of the saliency map where it is 1; it fades as ``alpha * sqrt(s)`` so
            that the radiograph stays readable where saliency ``s`` is low.
        ncols: Cases per row at most.
        cell_inches: Width of one case in inches.

    Returns:
        The figure, with a shared colour bar and a legend of the contours.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    k = overlay.n_cases
    ncols = max(1, min(ncols, k))
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(cell_inches * ncols + 1.0, cell_inches * nrows + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < k:
            _draw_case(ax, overlay, i, cmap=cmap, alpha=alpha)
    scale = ScalarMappable(norm=Normalize(0, 1), cmap=cmap)
    fig.colorbar(scale, ax=axes, shrink=0.8, fraction=0.04, label="saliency (normalised)")
    fig.suptitle(overlay.title, fontsize=11)
    _legend(fig, has_artifacts=overlay.artifact_masks is not None)
    return fig


def render_overlay(overlay: Overlay, path: Path | str, *, dpi: int = 100, **style: Any) -> Path:
    """Draw ``overlay`` (see :func:`overlay_figure` for ``style``) and save it as a PNG.

    Args:
        overlay: The cases to draw.
        path: Destination ``.png`` file; its directory must exist.
        dpi: Resolution of the PNG.
        **style: ``cmap``, ``alpha``, ``ncols``, ``cell_inches``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    fig = overlay_figure(overlay, **style)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def _draw_case(ax: Any, overlay: Overlay, i: int, *, cmap: str, alpha: float) -> None:
    image = overlay.images[i]
    height, width = image.shape
    extent = (0, width, height, 0)
    ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    saliency = np.clip(np.nan_to_num(overlay.maps01[i], nan=0.0), 0, 1)
    opacity = alpha * np.sqrt(saliency)  # the radiograph stays readable where saliency is low
    ax.imshow(
        saliency, cmap=cmap, vmin=0, vmax=1, alpha=opacity, extent=extent, interpolation="bilinear"
    )
    _contour(ax, overlay.lesion_masks[i], width, height, LESION_COLOUR)
    if overlay.artifact_masks is not None:
        _contour(ax, overlay.artifact_masks[i], width, height, ARTIFACT_COLOUR)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    caption = overlay.captions[i] if overlay.captions is not None else _caption(overlay.labels[i], overlay.scores[i])
    ax.set_title(caption, fontsize=9)


def _contour(ax: Any, mask: np.ndarray, width: int, height: int, colour: str) -> None:
    """Outline a boolean mask, stretched over an image of ``width`` x ``height`` pixels."""
    if not mask.any() or mask.all():
        return
    padded = np.pad(mask.astype(np.float32), 1)  # closes contours that touch the border
    h, w = mask.shape
    xs = (np.arange(w + 2) - 0.5) * (width / w)
    ys = (np.arange(h + 2) - 0.5) * (height / h)
    ax.contour(xs, ys, padded, levels=[0.5], colors=colour, linewidths=1.3)


def _legend(fig: Figure, *, has_artifacts: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=LESION_COLOUR, lw=1.5, label="lesion mask")]
    if has_artifacts:
        handles.append(Line2D([], [], color=ARTIFACT_COLOUR, lw=1.5, label="artifact mask"))
    legend = fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    legend.get_frame().set_facecolor("0.6")


def _caption(label: Any, score: Any) -> str:
    if isinstance(score, float):
        score = f"{score:.3f}" if math.isfinite(score) else "n/a"
    return f"label {label} | score {score}"


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()  # float16/bfloat16 -> float32
    return np.asarray(x)


def _cases(x: Any, name: str, *, rgb_to_gray: bool = False) -> np.ndarray:
    """``[K,H,W]``, ``[K,1,H,W]``, ``[K,3,H,W]`` (images only) or ``[H,W]`` -> ``[K,H,W]``."""
    array = _to_numpy(x)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 4 and array.shape[1] == 3 and rgb_to_gray:
        array = array.astype(np.float32).mean(axis=1)
    if array.ndim != 3:
        raise ValueError(f"Overlay.{name} must be [K,H,W] or [K,1,H,W], got shape {array.shape}")
    return array


def _flat(x: Any) -> list[Any]:
    return list(np.asarray(_to_numpy(x)).reshape(-1)) if not isinstance(x, (list, tuple)) else list(x)


def _label(x: Any) -> Any:
    """numpy/torch scalars to Python; an integral float label (``1.0``) to int."""
    x = x.item() if hasattr(x, "item") else x
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _score(x: Any) -> Any:
    x = x.item() if hasattr(x, "item") else x
    try:
        return float(x)
    except (TypeError, ValueError):
        return x
