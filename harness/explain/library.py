"""pytorch-grad-cam (grad-cam 1.5.7) behind our contract: its CAM family, and the references for ours."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from harness.explain.base import Explainer, check_targets, model_attr, register_explainer, target_scores
from harness.explain.gradcam import paper_upsample
from harness.explain.hooks import eval_mode, gradients_enabled, preserved_grads, usable_images


class LibraryCAM(Explainer):
    """A pytorch-grad-cam method run with exactly one ``ClassifierOutputTarget`` per sample.

    ``explain`` returns a raw, signed map: the library's own layer-resolution CAM (its
    ``get_cam_image``, recorded during the library's forward, before its ReLU and min-max), upsampled
    as our batched CAMs are (:func:`~harness.explain.gradcam.paper_upsample`). So the scale is kept,
    and ``unit_view(raw)`` equals the library's [0,1] map, which ``library_maps`` returns itself.

    The library's pitfalls are contained here: one target for a batch silently explains image 0
    (``__call__`` raises on a count mismatch first); its ``__exit__`` swallows ``IndexError`` (we
    release the hooks in ``finally`` instead of using its ``with``); it leaves the model in eval mode
    and overwrites parameter ``.grad`` (both restored). The target's score is its logit
    (``ClassifierOutputTarget``), so binary (2 logits) and multi-label (K logits) models both work.
    """

    category = "cam"
    view = "relu"
    library_class: ClassVar[str] = ""

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        signed, _ = self.run_library(model, images, targets)
        return paper_upsample(signed, tuple(images.shape[-2:]))

    def library_maps(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The library's own [0,1] maps ``[B,1,H,W]`` (ReLU, min-max, cv2 resize, min-max)."""
        check_targets(images, targets)
        return self.run_library(model, images, targets)[1]

    def run_library(
        self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(signed layer CAM [B,1,h,w], library map [B,1,H,W])``, both on the images' device."""
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        layer = model_attr(model, "target_layer")
        reshape = model_attr(model, "reshape_transform")
        per_sample = [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
        with eval_mode(model), preserved_grads(model), gradients_enabled():
            cam = getattr(pytorch_grad_cam, self.library_class)(
                model=model, target_layers=[layer], reshape_transform=reshape
            )
            try:
                recorded = record_cam_images(cam, self.adjust)
                maps = cam(input_tensor=usable_images(images), targets=per_sample)
                target_scores(cam.outputs.detach(), targets)  # range check, also where the method ignores targets
            finally:
                cam.activations_and_grads.release()
        signed = torch.from_numpy(np.ascontiguousarray(recorded[0], dtype=np.float32))
        return signed[:, None].to(images.device), torch.from_numpy(maps)[:, None].to(images.device)

    def adjust(self, cams: np.ndarray) -> np.ndarray:
        """Hook on the library's signed CAMs ``[B,h,w]`` before its ReLU; the identity by default."""
        return cams


def record_cam_images(cam: Any, adjust: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """Patch ``cam.get_cam_image`` (this instance only) to ``adjust`` and record each signed CAM."""
    recorded: list[np.ndarray] = []
    original = cam.get_cam_image

    def recording(*args: Any, **kwargs: Any) -> np.ndarray:
        image = original(*args, **kwargs)
        recorded.append(adjust(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image))
        return recorded[-1]

    cam.get_cam_image = recording
    return recorded


@register_explainer
class LibraryGradCAM(LibraryCAM):
    """pytorch-grad-cam's ``GradCAM`` (Selvaraju et al., ICCV 2017): the reference for ``gradcam``."""

    name = "gradcam-lib"
    description = "Grad-CAM via pytorch-grad-cam 1.5.7 (reference; slower)"
    library_class = "GradCAM"


@register_explainer
class LibraryGradCAMPlusPlus(LibraryCAM):
    """pytorch-grad-cam's ``GradCAMPlusPlus`` (Chattopadhay et al., WACV 2018): the reference for ``gradcam++``."""

    name = "gradcam++-lib"
    description = "Grad-CAM++ via pytorch-grad-cam 1.5.7 (reference; slower)"
    library_class = "GradCAMPlusPlus"


@register_explainer
class HiResCAM(LibraryCAM):
    """HiResCAM (Draelos & Carin, 2020): ``sum_k g_k * A_k`` elementwise, no spatial averaging.

    For a network whose head is global average pooling + linear, it equals Grad-CAM up to a
    constant; elsewhere it is provably faithful to the locations the score reads.
    """

    name = "hirescam"
    description = "HiResCAM via pytorch-grad-cam 1.5.7 (elementwise gradient x activation)"
    library_class = "HiResCAM"


@register_explainer
class XGradCAM(LibraryCAM):
    """XGrad-CAM (Fu et al., BMVC 2020): weights ``sum_ij g * A / sum_ij A`` (axiom-derived)."""

    name = "xgradcam"
    description = "XGrad-CAM via pytorch-grad-cam 1.5.7 (activation-normalised gradient weights)"
    library_class = "XGradCAM"


@register_explainer
class LayerCAM(LibraryCAM):
    """LayerCAM (Jiang et al., IEEE TIP 2021): ``sum_k relu(g_k) * A_k`` elementwise."""

    name = "layercam"
    description = "LayerCAM via pytorch-grad-cam 1.5.7 (positive-gradient-weighted activations)"
    library_class = "LayerCAM"


@register_explainer
class EigenCAM(LibraryCAM):
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): projection of the activations on their first principal component.

    **Ignores the target**: the map is the same for every class (it shows what the layer
    responds to, not why a class scored). No gradients are computed. On a 1x1 feature map the
    centred activations vanish and the map is constant.

    The sign of a principal component is arbitrary, and the library's ``EigenCAM`` keeps whatever
    its SVD returns: measured on a trained toy CNN, one lesion image in four came back inverted, so
    the ReLU view highlighted everything but the lesion. With ``orient`` (default) each projection
    is flipped where ``|min| > |max|``, the sign correction of Seg-Eigen-CAM (Chung & Ying, Appl.
    Sci. 2025; the library's ``get_2d_projection_with_sign_correction``): the more extreme side,
    usually the small salient region, is positive. A heuristic, not a guarantee.

    Args:
        orient: orient the sign as above; False keeps the library's sign.
    """

    name = "eigencam"
    description = "Eigen-CAM via pytorch-grad-cam 1.5.7 (first principal component, sign corrected; ignores target)"
    library_class = "EigenCAM"

    def __init__(self, *, orient: bool = True) -> None:
        self.orient = bool(orient)

    def adjust(self, cams: np.ndarray) -> np.ndarray:
        return oriented(cams) if self.orient else cams


def oriented(projections: np.ndarray) -> np.ndarray:
    """Flip each projection ``[B,h,w]`` whose most extreme value is negative (``|min| > |max|``)."""
    flat = projections.reshape(projections.shape[0], -1)
    sign = np.where(np.abs(flat.min(axis=1)) > np.abs(flat.max(axis=1)), -1.0, 1.0).astype(projections.dtype)
    return projections * sign[:, None, None]
