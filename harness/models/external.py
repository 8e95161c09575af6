"""Models trained outside the harness: rebuild them from a spec, verify the weights, write their manifest.

A team's model is a safetensors state dict plus what it takes to rebuild the network: a registered
architecture or any timm name, or a Python factory (``package.module:build``), the input size, 1 or
3 input channels (the harness's 1-channel images are replicated to 3), the classes or findings and
the input normalisation. :func:`import_weights` checks that the network can be built, that the
weights load strictly and that a forward pass at the input size works, and only then writes the
manifest beside the weights, in the store's manifest format (``external`` holds the spec), so that
``--checkpoint PATH`` loads it like any other checkpoint. Weights are never unpickled.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.models.architectures import ARCHITECTURES, ClassifierNet, target_layer_path
from harness.models.checkpoint_files import CheckpointError, file_sha256

#: ImageNet statistics (torchvision, timm): the usual normalisation of 3-channel models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Key prefixes of wrapped state dicts (DataParallel, Lightning, a ClassifierNet) stripped when every key has one.
KEY_PREFIXES = ("module.", "model.", "backbone.")
_SHOWN = 5  # keys listed per kind of mismatch


class ExternalModelError(CheckpointError):
    """An external model that cannot be rebuilt, loaded or run; the message names the cause and the fix."""


@dataclass(frozen=True)
class ExternalSpec:
    """How to rebuild a model trained elsewhere (stored as the manifest's ``external`` entry).

    Attributes:
        architecture: a registered architecture or any timm model name (exclusive with ``factory``).
        factory: ``package.module:function`` returning an ``nn.Module``; called with those of
            ``num_classes``, ``in_chans`` and ``img_size`` it accepts.
        img_size: input side length the model was trained for.
        in_chans: channels the network takes (3: the grey image is replicated).
        num_classes: logits: 2 for a binary softmax model, else one sigmoid logit per finding.
        finding_names: multi-label models: the finding of each logit.
        mean, std: per-channel normalisation of [0,1] images (one value, or one per channel).
        preprocess: the harness's fixed transform before it (``none``, ``clahe``, ``zscore``, ...).
        target_layer: CAM target layer inside the network (default: derived from timm, else the last conv).
        key_prefix: prefix stripped from every key of the weights file (``module.``: DataParallel).
    """

    architecture: str | None = None
    factory: str | None = None
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 2
    finding_names: tuple[str, ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    preprocess: str = "none"
    target_layer: str | None = None
    key_prefix: str = field(default="")

    def __post_init__(self) -> None:
        if (self.architecture is None) == (self.factory is None):
            raise ExternalModelError("name exactly one of --architecture NAME and --factory MODULE:FUNCTION")
        if self.in_chans not in (1, 3):
            raise ExternalModelError(f"in_chans must be 1 or 3, got {self.in_chans}")
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.in_chans):
                raise ExternalModelError(f"--{what} has {len(values)} values; give 1 or {self.in_chans} "
                                         f"(one per input channel)")
        if any(s <= 0 for s in self.std):
            raise ExternalModelError(f"--std must be positive, got {list(self.std)}")
        if self.finding_names and len(self.finding_names) != self.num_classes:
            raise ExternalModelError(f"{len(self.finding_names)} findings but {self.num_classes} classes: a "
                                     "multi-label model has one logit per finding")
        if not self.finding_names and self.num_classes != 2:
            raise ExternalModelError(f"--classes {self.num_classes} without --findings: a binary model has 2 logits "
                                     "(softmax, class 1 = finding); name the findings of a multi-label model "
                                     "with --findings a,b,...")
        if self.img_size < 8:
            raise ExternalModelError(f"--input-size must be at least 8 pixels, got {self.img_size}")

    @property
    def name(self) -> str:
        """The architecture name the reports show: the timm/registered name or ``module:function``."""
        return self.architecture or str(self.factory)

    @property
    def multilabel(self) -> bool:
        return bool(self.finding_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(finding_names=list(self.finding_names), mean=list(self.mean), std=list(self.std))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExternalSpec:
        values = dict(data)
        for key in ("finding_names", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


class ExternalNet(ClassifierNet):
    """A ClassifierNet around a network trained elsewhere: [0,1] grey images ``[B,1,H,W]``,
    replicated to ``in_chans`` channels and normalised with the network's own mean and std."""

    def __init__(self, backbone: nn.Module, spec: ExternalSpec, target_layer: str) -> None:
        super().__init__(backbone, arch=spec.name, img_size=spec.img_size, num_classes=spec.num_classes,
                         target_layer=target_layer, preprocess=spec.preprocess, multilabel=spec.multilabel,
                         finding_names=spec.finding_names)
        self.in_chans = spec.in_chans
        # [1,C,1,1] (or [1,1,1,1]): broadcasting a grey image against them replicates it to C channels.
        self.register_buffer("input_mean", _per_channel(spec.mean, spec.in_chans), persistent=False)
        self.register_buffer("input_std", _per_channel(spec.std, spec.in_chans), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        if self.preprocess.standardises:
            return self.backbone(x.expand(-1, self.in_chans, -1, -1))
        return self.backbone((x - self.input_mean) / self.input_std)


def _per_channel(values: tuple[float, ...], in_chans: int) -> torch.Tensor:
    return torch.tensor(values if len(values) == in_chans else values * in_chans, dtype=torch.float32).view(1, -1, 1, 1)


# ----------------------------------------------------------------------------------------------
# Building


def build_network(spec: ExternalSpec) -> nn.Module:
    """The bare network of ``spec`` (random init): from the factory, the registry or timm."""
    if spec.factory:
        return _from_factory(spec)
    return _from_architecture(spec)


def _from_architecture(spec: ExternalSpec) -> nn.Module:
    import timm

    name = str(spec.architecture)
    if name in ARCHITECTURES and spec.in_chans == 1:
        return ARCHITECTURES.get(name)(spec.img_size, spec.num_classes)
    if timm.is_model(name):
        kwargs = {"pretrained": False, "in_chans": spec.in_chans, "num_classes": spec.num_classes}
        try:  # vision transformers take the input size; most CNNs reject the keyword
            return timm.create_model(name, img_size=spec.img_size, **kwargs)
        except TypeError:
            return timm.create_model(name, **kwargs)
    if name in ARCHITECTURES:
        raise ExternalModelError(f"architecture {name!r} is built by the harness for 1 input channel; import "
                                 "with --in-chans 1, or build the 3-channel network with --factory MODULE:FUNCTION")
    raise ExternalModelError(_unknown_architecture(name))


def _unknown_architecture(name: str) -> str:
    import difflib

    import timm

    close = difflib.get_close_matches(name, sorted(set(timm.list_models()) | set(ARCHITECTURES.names())), n=5)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    return (f"unknown architecture {name!r}{hint} Any timm model name works (`timm.list_models()`), and so "
            f"do the registered ones ({', '.join(ARCHITECTURES.names()[:12])}, ...; `xai-harness list "
            "architectures`); for anything else pass --factory MODULE:FUNCTION")


def _from_factory(spec: ExternalSpec) -> nn.Module:
    function = load_factory(str(spec.factory))
    offered = {"num_classes": spec.num_classes, "in_chans": spec.in_chans, "img_size": spec.img_size}
    params = inspect.signature(function).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_any or k in params}
    try:
        network = function(**kwargs)
    except Exception as err:  # noqa: BLE001  (the user's code: say which call failed)
        raise ExternalModelError(f"factory {spec.factory!r} raised {type(err).__name__}: {err} (called with "
                                 f"{kwargs})") from err
    if not isinstance(network, nn.Module):
        raise ExternalModelError(f"factory {spec.factory!r} returned a {type(network).__name__}, not a "
                                 "torch.nn.Module; it must return the network")
    return network


def load_factory(reference: str):
    """The callable named ``package.module:function``; errors say what is missing and how to fix it."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ExternalModelError(f"factory {reference!r}: write it as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ExternalModelError(f"factory {reference!r}: module {module_name!r} cannot be imported ({err}); "
                                 "install its package or put its folder on PYTHONPATH") from err
    function = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ExternalModelError(f"factory {reference!r}: module {module_name!r} has no attribute {attribute!r}; "
                                     f"its callables: {', '.join(public) or '(none)'}")
        function = getattr(function, part)
    if not callable(function):
        raise ExternalModelError(f"factory {reference!r}: {attribute!r} is a {type(function).__name__}, not callable")
    return function


def target_layer_of(network: nn.Module, spec: ExternalSpec) -> str:
    """The CAM target layer inside ``network``: as given, else timm's rule, else the last convolution."""
    if spec.target_layer:
        path = spec.target_layer.removeprefix("backbone.")
        try:
            network.get_submodule(path)
        except AttributeError:
            names = [n for n, _ in network.named_modules() if n][-8:]
            raise ExternalModelError(f"--target-layer {spec.target_layer!r} is not a module of {spec.name}; "
                                     f"its last modules: {', '.join(names)}") from None
        return path
    try:
        return target_layer_path(network, spec.img_size)
    except (ValueError, AttributeError):
        convs = [n for n, m in network.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ExternalModelError(f"{spec.name}: no CAM target layer can be derived (no timm feature_info, no "
                                     "convolution); name one with --target-layer MODULE.PATH") from None
        return convs[-1]


def build_model(spec: ExternalSpec) -> ExternalNet:
    """``spec``'s network wrapped as an :class:`ExternalNet` (random init, eval mode)."""
    network = build_network(spec)
    return ExternalNet(network, spec, target_layer_of(network, spec)).eval()


# ----------------------------------------------------------------------------------------------
# Weights


def read_state(weights_path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (never a pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise ExternalModelError(f"{weights_path}: not a readable safetensors file ({err}); save the state dict "
                                 "with safetensors.torch.save_file (pickled .pt/.pth files are not read)") from err


def common_prefix(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The wrapper prefix every key of ``state`` has and no key of ``expected`` has ("" if none)."""
    for prefix in KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
            return prefix
    return ""


def state_problems(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """Missing keys, unexpected keys and mismatching shapes, the first few of each, with counts."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_SHOWN])}{more}")
    return problems


def load_weights(model: ExternalNet, weights_path: Path, spec: ExternalSpec) -> None:
    """Load the file into ``model.backbone`` strictly; a mismatch lists what does not fit."""
    state = read_state(weights_path)
    if spec.key_prefix:
        state = {k.removeprefix(spec.key_prefix): v for k, v in state.items()}
    problems = state_problems(state, model.backbone.state_dict())
    if problems:
        raise ExternalModelError(f"{weights_path}: the state dict does not fit {spec.name} (img_size "
                                 f"{spec.img_size}, in_chans {spec.in_chans}, {spec.num_classes} classes): "
                                 f"{'; '.join(problems)}")
    model.backbone.load_state_dict(state, strict=True)


def check_forward(model: ExternalNet, spec: ExternalSpec) -> None:
    """One forward pass of two grey images at the input size; the output must be ``[2, num_classes]``."""
    size = spec.img_size
    try:
        with torch.no_grad():
            out = model(torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0)))
    except Exception as err:  # noqa: BLE001  (any failure of the user's network at this size)
        raise ExternalModelError(f"{spec.name}: the forward pass at input size {size}x{size} ({spec.in_chans} "
                                 f"channel(s)) failed: {type(err).__name__}: {err}; pass the size the model was "
                                 "trained for with --input-size") from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ExternalModelError(f"{spec.name}: at input size {size}x{size} the model returns {shape}, expected "
                                 f"logits (2, {spec.num_classes}); check --classes / --findings")


def load_external(weights_path: str | Path, manifest: dict[str, Any]) -> ExternalNet:
    """Rebuild an imported model from its manifest and load its weights (the caller checked the sha256)."""
    spec = ExternalSpec.from_dict(manifest["external"])
    model = build_model(spec)
    load_weights(model, Path(weights_path), spec)
    return model.eval()


def verify(weights_path: str | Path, spec: ExternalSpec) -> tuple[ExternalNet, ExternalSpec]:
    """Build, load strictly (a wrapper prefix such as ``module.`` is detected) and run one forward pass."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise ExternalModelError(f"{weights_path}: no such weights file")
    model = build_model(spec)
    if not spec.key_prefix:
        prefix = common_prefix(read_state(weights_path), model.backbone.state_dict())
        spec = ExternalSpec.from_dict({**spec.to_dict(), "key_prefix": prefix}) if prefix else spec
    load_weights(model, weights_path, spec)
    check_forward(model, spec)
    return model, spec


def import_weights(weights_path: str | Path, spec: ExternalSpec, *, dataset: str = "synth-cxr",
                   dataset_options: dict[str, Any] | None = None, name: str | None = None,
                   profile: str | None = None, overwrite: bool = False) -> Path:
    """Verify ``weights_path`` against ``spec`` and write its manifest beside it; returns the manifest path.

    Raises:
        ExternalModelError: the model cannot be rebuilt, the weights do not fit, the forward pass
            fails, the dataset is unknown, or a manifest exists already (``overwrite`` replaces it).
    """
    from harness.data import list_datasets
    from harness.models.checkpoints import atomic_write_json
    from harness.models.run_identity import FORMAT_VERSION, dataset_version, versions

    weights_path = Path(weights_path)
    manifest_path = weights_path.with_suffix(".json")
    if weights_path.suffix != ".safetensors":
        raise ExternalModelError(f"{weights_path}: the weights must be a .safetensors file (pickles are never read)")
    if manifest_path.exists() and not overwrite:
        raise ExternalModelError(f"{manifest_path} exists already (imported before?); use --checkpoint "
                                 f"{weights_path}, or import again with --force to replace it")
    known = list_datasets()  # registers the built-in datasets
    if dataset not in known:
        raise ExternalModelError(f"unknown dataset {dataset!r}; known: {', '.join(known)}")
    model, spec = verify(weights_path, spec)
    manifest = {
        "format": FORMAT_VERSION,
        "model_name": name or weights_path.stem,
        "architecture": spec.name,
        "img_size": spec.img_size,
        "num_classes": spec.num_classes,
        "target_layer": model.target_layer_name,
        "dataset": {"name": dataset, "options": dict(dataset_options or {}), "version": dataset_version(dataset)},
        "weights_file": weights_path.name,
        "sha256": file_sha256(weights_path),
        "versions": versions(),
        "external": spec.to_dict(),
    }
    if profile:
        manifest["profile"] = profile
    if spec.preprocess != "none":
        manifest["preprocess"] = spec.preprocess
    if spec.multilabel:
        manifest.update(multilabel=True, finding_names=list(spec.finding_names))
    atomic_write_json(manifest_path, manifest)
    return manifest_path


__all__ = ["ExternalSpec", "ExternalNet", "ExternalModelError", "build_model", "build_network", "load_factory",
           "load_external", "verify", "import_weights", "state_problems", "IMAGENET_MEAN", "IMAGENET_STD"]
