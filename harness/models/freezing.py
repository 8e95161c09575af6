"""Which parameters train: all, the classifier head only (linear probe), or the last k feature stages.

Stages come from the library: timm's ``feature_info`` taps (cut at a truncated model's new last
block), or torchvision's ``layer1..4`` (ResNet) and the max-pools of ``features`` (VGG, AlexNet).
The head is timm's ``get_classifier()`` or torchvision's ``fc`` / ``classifier``. "The last k
stages" means every module registered after the tap that ends stage ``n - k`` (module registration
order is forward order for the registered architectures), so the head and anything between the
last stage and the head train too. Frozen layers also keep their normalisation statistics.
"""

from __future__ import annotations

from torch import nn

from harness.models.architectures import CAM_TARGET_ATTR, ClassifierNet


def set_trainable(model: ClassifierNet, stages: int | None) -> list[nn.Parameter]:
    """Set ``requires_grad`` per ``stages`` (None: all, 0: head, k: last k stages + head).

    Returns:
        The trainable parameters, in ``model.parameters()`` order.
    """
    if stages is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return list(model.parameters())
    names = _head_names(model) if stages == 0 else _names_after(model, _stage_paths(model.backbone), stages)
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"{model.arch}: no parameter left to train with trainable_stages={stages}")
    return trainable


def freeze_norm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm whose parameters are frozen in eval mode (call after ``model.train()``)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def _head_names(model: ClassifierNet) -> set[str]:
    backbone = model.backbone
    head = backbone.get_classifier() if hasattr(backbone, "get_classifier") else (
        getattr(backbone, "fc", None) or getattr(backbone, "classifier", None))
    if not isinstance(head, nn.Module) or not list(head.parameters()):
        raise ValueError(f"{model.arch}: cannot find the classifier head")
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def _stage_paths(backbone: nn.Module) -> list[str]:
    """Dotted paths (inside ``backbone``) of the modules that end each feature stage, in order."""
    info = getattr(backbone, "feature_info", None)
    if info:
        paths = [f["module"] for f in info]
        cut = getattr(backbone, CAM_TARGET_ATTR, None)
        return paths[: paths.index(cut) + 1] if cut in paths else paths
    if all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):
        return ["relu"] + [f"layer{i}" for i in range(1, 5)]
    if isinstance(getattr(backbone, "features", None), nn.Sequential):
        return [f"features.{i}" for i, m in enumerate(backbone.features) if isinstance(m, nn.MaxPool2d)]
    raise ValueError(f"{type(backbone).__name__}: no feature stages known (no feature_info, layer1-4 or features)")


def _names_after(model: ClassifierNet, stage_paths: list[str], stages: int) -> set[str]:
    """Parameter names of modules registered after the end of stage ``len(stage_paths) - stages``."""
    if stages >= len(stage_paths):
        return {name for name, _ in model.named_parameters()}
    boundary = "backbone." + stage_paths[len(stage_paths) - 1 - stages]
    order = [name for name, _ in model.named_modules()]
    position = order.index(boundary)
    later = {name for name in order[position + 1:] if not name.startswith(boundary + ".")}
    return {name for name, _ in model.named_parameters() if name.rpartition(".")[0] in later}


__all__ = ["set_trainable", "freeze_norm_statistics"]
