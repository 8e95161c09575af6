"""pytorch-grad-cam (grad-cam 1.5.7) behind our contract: the reference our batched CAMs must match."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from harness.explain.base import Explainer, model_attr, register_explainer
from harness.explain.hooks import eval_mode, gradients_enabled, preserved_grads, usable_images


class LibraryCAM(Explainer):
    """A pytorch-grad-cam method with exactly one ``ClassifierOutputTarget`` per sample.

    The library's pitfalls are contained here: one target for a batch silently explains image 0
    (``__call__`` raises on a count mismatch first); its ``__exit__`` swallows ``IndexError`` (we
    release the hooks in ``finally`` instead of using its ``with``); it leaves the model in eval mode
    and overwrites parameter ``.grad`` (both restored). The returned map is the library's own
    [0,1] map (ReLU and min-max already applied), on the model's device.
    """

    view = "relu"
    library_class: ClassVar[str] = ""

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam_class = getattr(pytorch_grad_cam, self.library_class)
        layer = model_attr(model, "target_layer")
        reshape = model_attr(model, "reshape_transform")
        per_sample = [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
        with eval_mode(model), preserved_grads(model), gradients_enabled():
            cam = cam_class(model=model, target_layers=[layer], reshape_transform=reshape)
            try:
                maps = cam(input_tensor=usable_images(images), targets=per_sample)
            finally:
                cam.activations_and_grads.release()
        return torch.from_numpy(maps).to(images.device)[:, None]


@register_explainer
class LibraryGradCAM(LibraryCAM):
    """pytorch-grad-cam's ``GradCAM``: the reference implementation for ``gradcam``."""

    name = "gradcam-lib"
    description = "Grad-CAM via pytorch-grad-cam 1.5.7 (reference; slower)"
    library_class = "GradCAM"


@register_explainer
class LibraryGradCAMPlusPlus(LibraryCAM):
    """pytorch-grad-cam's ``GradCAMPlusPlus``: the reference implementation for ``gradcam++``."""

    name = "gradcam++-lib"
    description = "Grad-CAM++ via pytorch-grad-cam 1.5.7 (reference; slower)"
    library_class = "GradCAMPlusPlus"
