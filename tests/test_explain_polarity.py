"""Polarity: on an image whose only signal is the lesion, every explainer's maximum lies on the lesion.

MONAI's default CAM normaliser maps the maximum to 0 (ANCHORS.md): an inverted map looks plausible
and scores badly everywhere. Here a small CNN is trained on toy-blobs (a bright disk = positive) and
explained on lesion-only images (flat background + disk) for its positive class.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.explain import EXPLAINERS, ExplainerUnsupported, create_explainer
from harness.models.architectures import ClassifierNet
from harness.models.testing import toy_imageset

SIZE = 32
CENTRES = [(10, 21), (22, 9), (16, 16), (9, 9)]
RADIUS = 4
BACKGROUND, LESION = 0.35, 0.85  # toy-blobs: background 0.3-0.4, lesion +0.5
#: How far (pixels) the maximum may lie outside the disk: a CAM is as coarse as its feature map (one
#: cell of the stride-4 target layer); pixel-level maps may peak on the lesion's edge (one pixel).
DILATION = {"cam": 4, "gradient": 1, "lrp": 1}
MODEL_BASED = [n for n in EXPLAINERS.names() if not EXPLAINERS.meta(n)["is_control"]]


def peak_on_lesion(maps: torch.Tensor, lesions: torch.Tensor, dilation: int = 0) -> torch.Tensor:
    """Per image: does the first argmax of ``maps`` ``[B,1,H,W]`` lie in the lesion dilated by ``dilation`` px?"""
    region = lesions.float()
    if dilation:
        region = F.max_pool2d(region, 2 * dilation + 1, stride=1, padding=dilation)
    first_argmax = maps.flatten(1).argmax(1)
    return region.flatten(1).gather(1, first_argmax[:, None]).squeeze(1) > 0


def plain_cnn() -> ClassifierNet:
    """Three conv stages (stride-4 CAM target, 8x8 cells at 32 px), ReLU only: every explainer applies."""
    backbone = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
    )
    return ClassifierNet(backbone, arch="plain_cnn", img_size=SIZE, num_classes=2, target_layer="10")


@pytest.fixture(scope="module")
def trained() -> ClassifierNet:
    """~2 s on one CPU thread: 6 epochs of Adam on 256 toy-blobs images, with brightness jitter.

    The jitter (+-0.3) makes the disk, not the overall brightness, the evidence; without it the
    model also keys on the mean grey level.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, g = plain_cnn(), torch.Generator().manual_seed(0)
    data = toy_imageset("train", size=SIZE, n=256)
    x, y = data.images.float() / 255, data.labels
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        for idx in torch.randperm(len(x), generator=g).split(32):
            jitter = (torch.rand(len(idx), 1, 1, 1, generator=g) - 0.5) * 0.6
            loss = F.cross_entropy(model((x[idx] + jitter).clamp(0, 1)), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    torch.set_num_threads(threads)
    val = toy_imageset("val", size=SIZE, n=128)
    with torch.no_grad():
        accuracy = (model.eval()(val.images.float() / 255).argmax(1) == val.labels).float().mean()
    assert accuracy >= 0.95, f"the toy model did not learn the task (val accuracy {float(accuracy):.2f})"
    return model


@pytest.fixture(scope="module")
def lesion_only() -> tuple[torch.Tensor, torch.Tensor]:
    """Four images: flat background and one disk each, at different places; and the disks."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    disks = torch.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS**2 for cy, cx in CENTRES])[:, None]
    return BACKGROUND + (LESION - BACKGROUND) * disks.float(), disks


def positive_class(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.long)


def test_the_model_sees_the_lesion(trained, lesion_only):
    images, _ = lesion_only
    with torch.no_grad():
        assert (trained(images).softmax(1)[:, 1] > 0.9).all()
        assert (trained(torch.full_like(images, BACKGROUND)).softmax(1)[:, 1] < 0.5).all()


@pytest.mark.parametrize("name", MODEL_BASED)
def test_maximum_lies_on_the_lesion(trained, lesion_only, name):
    images, disks = lesion_only
    explainer = create_explainer(name)
    try:
        raw = explainer(trained, images, positive_class(len(images)))
    except ExplainerUnsupported as why:
        pytest.skip(f"{name}: {why}")
    dilation = DILATION[explainer.category]
    hits = peak_on_lesion(explainer.unit_view(raw), disks, dilation)
    missed = (~hits).nonzero().flatten().tolist()
    assert hits.all(), f"{name}: maximum off the lesion (+{dilation} px) for images {missed}"


@pytest.mark.parametrize("name", [n for n in MODEL_BASED if EXPLAINERS.get(n).view != "abs"])
def test_a_negated_map_fails_the_polarity_judge(trained, lesion_only, name):
    """Inverted polarity (the MONAI pitfall) must not pass: negate the raw map, then take the view."""
    images, disks = lesion_only
    explainer = create_explainer(name)
    raw = explainer(trained, images, positive_class(len(images)))
    negated = explainer.unit_view(-raw)
    assert not peak_on_lesion(negated, disks, DILATION[explainer.category]).any()


@pytest.mark.parametrize("name", MODEL_BASED)
def test_an_inverted_view_fails_the_polarity_judge(trained, lesion_only, name):
    """Also for magnitude views (``abs``, where negation changes nothing): ``1 - view`` must fail."""
    images, disks = lesion_only
    explainer = create_explainer(name)
    view = explainer.unit_view(explainer(trained, images, positive_class(len(images))))
    assert not peak_on_lesion(1 - view, disks, DILATION[explainer.category]).any()


def test_the_judge_on_hand_made_maps(lesion_only):
    _, disks = lesion_only
    maps = torch.zeros(4, 1, SIZE, SIZE)
    maps[0, 0, 10, 21] = 1  # centre of disk 0
    maps[1, 0, 22, 9 + RADIUS + 1] = 1  # one pixel right of disk 1
    maps[2, 0, 0, 0] = 1  # far corner
    maps[3] = 1.0  # constant: first argmax is pixel (0, 0)
    assert peak_on_lesion(maps, disks).tolist() == [True, False, False, False]
    assert peak_on_lesion(maps, disks, dilation=1).tolist() == [True, True, False, False]
