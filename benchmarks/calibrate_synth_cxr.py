"""Calibrate synth-cxr's difficulty: train a small CNN on the 64x64 train split, report val AUROC.

The target band is 0.85-0.97 for a timm resnet18 (in_chans=1, num_classes=2, pretrained=False)
trained ~5 epochs with Adam (batch 32) on CPU. Run from the repository root:

    .venv/bin/python benchmarks/calibrate_synth_cxr.py --epochs 5 --lr 1e-3 --threads 1

``--time`` also times a fresh generation of train+val+test at 64x64 and ~200 images at 224x224;
``--sheet PATH [--sheet-size 224]`` writes a 4x4 contact sheet with mask contours (lesion red, lungs
cyan, drain yellow, marker magenta, border green) and skips training with ``--epochs 0``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import load_dataset
from harness.data.imageset import ImageSet
from harness.data.synth_cxr import generate, make_config

log = logging.getLogger("calibrate_synth_cxr")


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks of ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_and_score(train: ImageSet, val: ImageSet, epochs: int, lr: float, seed: int) -> list[float]:
    """Train a timm resnet18 from scratch; return the val AUROC after every epoch."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_train, y_train = (train.as_float() - 0.5) / 0.25, train.labels
    x_val = (val.as_float() - 0.5) / 0.25
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        for batch in torch.randperm(len(train), generator=gen).split(32):
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model(b).softmax(1)[:, 1] for b in x_val.split(256)]).numpy()
        history.append(auroc(scores, val.labels.numpy()))
        seconds = time.perf_counter() - started
        log.info("epoch %d: loss %.3f val AUROC %.3f (%.0fs)", epoch + 1, loss.item(), history[-1], seconds)
    return history


def contact_sheet(images: ImageSet, path: str, n: int = 16) -> None:
    """Save the first ``n`` images as a grid with lesion, lung and artifact contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"chest_drain": "y", "marker": "m", "border": "g"}
    side = int(np.ceil(np.sqrt(n)))
    fig, axes = plt.subplots(side, side, figsize=(3 * side, 3 * side))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= min(n, len(images)):
            continue
        ax.imshow(images.images[i, 0], cmap="gray", vmin=0, vmax=255)
        masks = [(images.lung_masks[i, 0], "c"), (images.lesion_masks[i, 0], "r")]
        masks += [(m[i, 0], colours[k]) for k, m in images.artifact_masks.items()]
        for mask, colour in masks:
            if mask.any():
                ax.contour(mask.numpy().astype(float), levels=[0.5], colors=colour, linewidths=0.6)
        ax.set_title(f"label {int(images.labels[i])}  patient {int(images.patient_ids[i])}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def time_generation(cache_dir: str) -> dict[str, float]:
    """Seconds to render 64x64 train+val+test (about 2,000 images) and 200 images at 224x224."""
    load_dataset("synth-cxr", "train", size=64, n_patients=5, cache_dir=cache_dir)  # warm the lesion bank
    started = time.perf_counter()
    n = sum(len(generate(make_config(s, size=64), cache_dir=cache_dir)) for s in ("train", "val", "test"))
    t64 = time.perf_counter() - started
    started = time.perf_counter()
    n224 = len(generate(make_config("train", size=224, n_patients=100), cache_dir=cache_dir))
    t224 = time.perf_counter() - started
    return {"images_64": n, "seconds_64": round(t64, 2), "images_224": n224, "seconds_224": round(t224, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--time", action="store_true", help="also time the generation (fresh, no cache)")
    parser.add_argument("--sheet", default=None, help="write a contact sheet of the train split here")
    parser.add_argument("--sheet-size", type=int, default=64)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.time:
        with tempfile.TemporaryDirectory() as tmp:
            log.info("generation: %s", json.dumps(time_generation(args.cache_dir or tmp)))
    if args.sheet:
        sheet_set = load_dataset(
            "synth-cxr", "train", size=args.sheet_size, n_patients=20, seed=args.seed, cache_dir=args.cache_dir
        )
        contact_sheet(sheet_set, args.sheet)
        log.info("contact sheet written to %s", args.sheet)
    if args.epochs <= 0:
        return
    train = load_dataset("synth-cxr", "train", size=64, seed=args.seed, cache_dir=args.cache_dir)
    val = load_dataset("synth-cxr", "val", size=64, seed=args.seed, cache_dir=args.cache_dir)
    log.info("train %d images (%.2f positive), val %d", len(train), train.labels.float().mean(), len(val))
    started = time.perf_counter()
    history = train_and_score(train, val, args.epochs, args.lr, args.seed)
    log.info(
        "RESULT resnet18 %d epochs lr %g: val AUROC %.3f (per epoch %s) in %.0fs",
        args.epochs, args.lr, history[-1], [round(h, 3) for h in history], time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
