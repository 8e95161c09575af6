"""``xai-harness import``: verify a model trained elsewhere and write its manifest (see ``external.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

#: Named normalisations (mean, std) of [0,1] images: ImageNet's (``external.IMAGENET_MEAN``/``_STD``), the
#: harness's own fixed ``(x - 0.5) / 0.25``, and none. Literal here: building the parser must not import torch.
NORMALISATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "harness": ((0.5,), (0.25,)),
                  "none": ((0.0,), (1.0,))}


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", metavar="WEIGHTS.safetensors", help="the state dict (safetensors; never a pickle)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--architecture", metavar="NAME", help="a registered architecture or any timm model name")
    source.add_argument("--factory", metavar="MODULE:FUNCTION", help="a function returning the nn.Module; called "
                        "with those of num_classes, in_chans, img_size it accepts (the module must be importable "
                        "wherever the gate runs)")
    parser.add_argument("--input-size", type=int, default=224, metavar="N", help="input side length (default 224)")
    parser.add_argument("--in-chans", type=int, default=3, choices=(1, 3), help="input channels the network takes; "
                        "3: the grey image is replicated (default 3)")
    parser.add_argument("--classes", type=int, default=None, metavar="N", help="number of logits: 2 for a binary "
                        "softmax model (default), else the number of --findings")
    parser.add_argument("--findings", default=None, metavar="A,B,...", help="multi-label model: the finding of "
                        "each sigmoid logit, in order")
    parser.add_argument("--mean", nargs="+", default=None, metavar="M", help="per-channel mean of [0,1] images "
                        "(1 or in-chans values, or imagenet / harness / none); default: imagenet for 3 channels, "
                        "harness (0.5) for 1")
    parser.add_argument("--std", nargs="+", default=None, metavar="S", help="per-channel std (as --mean; default "
                        "as --mean's: 0.229,0.224,0.225 or 0.25)")
    parser.add_argument("--preprocess", default="none", help="the harness's fixed transform before normalising: "
                        "none, clahe, zscore, clahe+zscore (default none)")
    parser.add_argument("--target-layer", default=None, metavar="MODULE.PATH", help="CAM target layer inside the "
                        "network (default: from timm's feature_info, else the last convolution)")
    parser.add_argument("--dataset", default="synth-cxr", help="registered dataset the checks read (default "
                        "synth-cxr; `xai-harness list datasets`)")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option (YAML value), repeatable")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default=None, help="the suite overrides that apply "
                        "(profile:cpu / profile:gpu); default: none")
    parser.add_argument("--name", default=None, help="model name in the manifest (default: the file stem)")
    parser.add_argument("--force", action="store_true", help="replace an existing manifest beside the weights")


def spec_from_args(args: argparse.Namespace):
    """The :class:`~harness.models.external.ExternalSpec` the arguments describe."""
    from harness.models.external import ExternalSpec

    findings = tuple(f.strip() for f in (args.findings or "").split(",") if f.strip())
    classes = args.classes if args.classes is not None else (len(findings) if findings else 2)
    default = "imagenet" if args.in_chans == 3 else "harness"
    mean = _values(args.mean or [default], 0)
    std = _values(args.std or [args.mean[0] if args.mean and args.mean[0] in NORMALISATIONS else default], 1)
    return ExternalSpec(architecture=args.architecture, factory=args.factory, img_size=args.input_size,
                        in_chans=args.in_chans, num_classes=classes, finding_names=findings, mean=mean, std=std,
                        preprocess=args.preprocess, target_layer=args.target_layer)


def _values(words: list[str], which: int) -> tuple[float, ...]:
    """``["0.485,0.456", "0.406"]`` -> floats; a preset name -> its mean (``which`` 0) or std (1)."""
    from harness.models.external import ExternalModelError

    if len(words) == 1 and words[0] in NORMALISATIONS:
        return NORMALISATIONS[words[0]][which]
    try:
        return tuple(float(v) for word in words for v in word.split(",") if v)
    except ValueError:
        raise ExternalModelError(f"--mean/--std take numbers or one of {', '.join(NORMALISATIONS)}, got "
                                 f"{' '.join(words)!r}") from None


def dataset_options(pairs: list[str]) -> dict[str, Any]:
    from harness.models.external import ExternalModelError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ExternalModelError(f"--dataset-option {pair!r}: write KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    return options


def import_command(args: argparse.Namespace) -> int:
    """Verify the weights (rebuild, strict load, one forward pass), then write the manifest beside them."""
    from rich.console import Console

    from harness.models.external import import_weights

    spec = spec_from_args(args)
    manifest = import_weights(args.weights, spec, dataset=args.dataset, dataset_options=dataset_options(
        args.dataset_option), name=args.name, profile=args.profile, overwrite=args.force)
    Console(stderr=True).print(
        f"verified {args.weights}: {spec.name} at {spec.img_size}x{spec.img_size}, {spec.in_chans} channel(s), "
        f"{spec.num_classes} logits, mean {list(spec.mean)}, std {list(spec.std)}; wrote {manifest}\n"
        f"check it with: pytest suites/ --checkpoint {args.weights}", markup=False, highlight=False, soft_wrap=True)
    return 0


__all__ = ["add_import_arguments", "import_command", "spec_from_args"]
