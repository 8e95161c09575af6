"""Explainer throughput: our batched Grad-CAM / Grad-CAM++ vs pytorch-grad-cam on the same inputs.

    python benchmarks/bench_explain.py            # GPU if present: resnet50 + vit_base at 224, batch 64
    python benchmarks/bench_explain.py --quick    # CPU: resnet18 + vit_small at 64x64, batch 32

Writes benchmarks/results/explain_<device>.json (img/s, the peer's img/s, ratio, max |diff| of the
[0,1] maps). Random-init weights and random images, as in ../shared/PERF.md.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from common import record, timed, write_results  # noqa: I001  (benchmarks/ is on sys.path as a script)
from harness.explain import create_explainer
from harness.models import create_model

PAIRS = (("gradcam", "gradcam-lib"), ("gradcam++", "gradcam++-lib"))


def explain_rate(model, name: str, images: torch.Tensor, device: torch.device, bf16: bool, repeats: int) -> tuple[float, torch.Tensor]:
    explainer = create_explainer(name)
    targets = torch.arange(images.shape[0], device=device) % 2
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = {}

    def run():
        with autocast:
            out["maps"] = explainer(model, images, targets)

    seconds = timed(run, device, repeats=repeats)
    return images.shape[0] / seconds, explainer.unit_view(out["maps"].float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized run (64x64, small models)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    size, batch = (224, 64) if device.type == "cuda" else (64, 32)
    archs = ("resnet50", "vit_base_patch16_224") if device.type == "cuda" else ("resnet18", "vit_small_patch16_224")
    repeats = 5 if device.type == "cuda" else 2
    torch.manual_seed(0)
    records = []
    for arch in archs:
        model = create_model(arch, img_size=size).to(device).eval()
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        images = torch.rand(batch, 1, size, size, device=device)
        for ours, peer in PAIRS:
            peer_rate, peer_maps = explain_rate(model, peer, images, device, False, repeats)
            for bf16 in ((False, True) if device.type == "cuda" else (False,)):
                rate, maps = explain_rate(model, ours, images, device, bf16, repeats)
                diff = float((maps - peer_maps).abs().max())
                records.append(record(f"{ours} {arch} {size}px batch {batch}{' bf16' if bf16 else ' fp32'}", device,
                                      rate, "img/s", peer=f"pytorch-grad-cam 1.5.7 {peer} (fp32)",
                                      peer_value=peer_rate, agreement_max_abs_diff=diff))
                print(f"{records[-1]['name']}: {rate:.0f} img/s vs {peer_rate:.0f} ({rate / peer_rate:.1f}x), "
                      f"max |diff| {diff:.1e}")
    print(write_results("explain", device, records, note="random-init weights, random images; best of repeats"))


if __name__ == "__main__":
    main()
