"""End-to-end training throughput per architecture, through the trainer, and the seed-000 estimate.

Measures what a training run pays per image: uint8 batch on the device -> float -> GPU/CPU-side
augmentation -> model (with the recipe's preprocessing, e.g. CLAHE + z-score) -> loss -> backward
-> optimizer step. Validation is excluded. Compared with PERF.md's pure-model ceiling (forward +
backward + optimizer on data already on the device, no augmentation). Writes
``benchmarks/results/train_<device-slug>.json``: machine info and a list of records (name, device,
torch, value, unit, and where PERF.md has the figure: peer, peer_value, ratio).

    .venv/bin/python benchmarks/bench_train.py --mode cpu          # 64x64: resnet18, test_resnet
    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/bench_train.py    # on a GPU: 224x224 bf16

GPU mode measures the nine seed-000 architectures (resnet18/34/50/101, vgg16/19, vit small/base/
large) at batch 128, so the protocol estimate (7,000 images; 50 epochs per CNN, 300 per ViT) uses
measured per-epoch times only; ``--compile`` adds torch.compile runs where the architecture asks
for it. Runs on torch 2.11 as well (no newer API).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from common import record, write_results  # noqa: I001  (benchmarks/ is on sys.path as a script)
from harness.data import ImageSet
from harness.models import trainer
from harness.models.architectures import get_architecture_meta
from harness.models.recipes import Profile, get_recipe
from harness.models.zoo import ZooEntry

PEER = "pure-model ceiling, PERF.md"
#: PERF.md "Training step, pure model": H100, batch 128, 224x224 (bf16 + channels_last; + compile).
GPU_PEERS = {"resnet18": 9429, "resnet50": 3680, "resnet101": 2070, "vgg16": 2980, "densenet121": 1862,
             "efficientnet_b0": 2964, "vit_small_patch16_224": 3857, "vit_base_patch16_224": 2435,
             "vit_large_patch16_224": 879}
GPU_COMPILED_PEERS = {"resnet18": 9090, "resnet50": 4727, "vgg16": 4057, "vit_small_patch16_224": 5755,
                      "vit_base_patch16_224": 3124, "vit_large_patch16_224": 1089}
#: PERF.md "CPU ... training img/s at 64x64, 1 channel, batch 32" (2 cores).
CPU_PEERS = {"resnet18": 93, "resnet50": 44, "densenet121": 58, "efficientnet_b0": 93, "vit_small_patch16_224": 49}
SEED000 = {"resnet18": 50, "resnet34": 50, "resnet50": 50, "resnet101": 50, "vgg16": 50, "vgg19": 50,
           "vit_small_patch16_224": 300, "vit_base_patch16_224": 300, "vit_large_patch16_224": 300}
SEED000_IMAGES = 7000


def synthetic_split(n: int, size: int, seed: int) -> ImageSet:
    """Random uint8 images and balanced labels (masks are not used by the trainer: a broadcast view)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)
    masks = torch.zeros((1, 1, 1, 1), dtype=torch.bool).expand(n, 1, size, size)
    return ImageSet(images=images, labels=torch.arange(n) % 2, lesion_masks=masks, lung_masks=masks,
                    name="bench", config={"size": size, "n": n})


def measure(arch: str, *, profile: Profile, device: torch.device, batch: int, steps: int, warmup: int,
            compile_mode: bool | str) -> dict:
    """img/s of ``steps`` timed training steps (after ``warmup`` untimed ones) and peak GPU memory."""
    recipe_name = "pneumothorax_vit" if get_architecture_meta(arch)["family"] == "vit" else "pneumothorax_cnn"
    recipe = dataclasses.replace(get_recipe(recipe_name, "gpu"), profile="cpu", batch_size=batch, epochs=1,
                                 warmup_epochs=0)
    if profile.precision == "fp32":  # the cpu profile's model: no CLAHE (as the cpu recipe)
        recipe = dataclasses.replace(recipe, preprocess=get_recipe(recipe_name, "cpu").preprocess)
    entry = ZooEntry(name=f"bench-{arch}", architecture=arch, dataset="bench", recipe=recipe_name, seed=0)
    data = synthetic_split(batch * steps, profile.img_size, seed=0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with trainer._training_backends(profile, device):
        fitter = trainer._Fitter(entry, recipe, profile, device, data, data.subset(torch.arange(2)),
                                 compile_mode=compile_mode)
        fitter.model.train()
        for i in range(warmup):
            fitter.train_step(torch.arange(i * batch, (i + 1) * batch, device=device) % len(data))
        _sync(device)
        warm_seconds = time.perf_counter() - started
        begin = time.perf_counter()
        fitter.train_epoch(lambda: None)
        _sync(device)
        seconds = time.perf_counter() - begin
    result = {"img_per_s": batch * steps / seconds, "seconds": seconds, "warmup_seconds": warm_seconds,
              "recipe": recipe_name, "preprocess": recipe.preprocess, "augment": recipe.augment.enabled}
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del fitter
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_peer(arch: str, peers: dict[str, float]) -> dict:
    return {"peer": PEER, "peer_value": peers[arch]} if arch in peers else {}


def protocol_estimate(rates: dict[str, float], device: torch.device, note: str) -> dict:
    """Seed 000: sum over its architectures of epochs x 7,000 images / measured img/s (hours)."""
    measured = {a: e for a, e in SEED000.items() if a in rates}
    seconds = sum(e * SEED000_IMAGES / rates[a] for a, e in measured.items())
    missing = sorted(set(SEED000) - set(measured))
    return record("seed000_protocol_estimate", device, seconds / 3600, "h", included=sorted(measured),
                  missing=missing, note=note + (" Partial: architectures not measured are missing." if missing else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("auto", "gpu", "cpu"), default="auto")
    parser.add_argument("--archs", help="comma-separated architectures (default per mode)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--steps", type=int, help="timed steps per architecture")
    parser.add_argument("--warmup", type=int, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the CPU machine is shared)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile where it pays (GPU)")
    args = parser.parse_args(argv)
    gpu = args.mode == "gpu" or (args.mode == "auto" and torch.cuda.is_available())
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        profile = Profile("gpu", img_size=224, precision="bf16", channels_last=True, needs_cuda=True)
        archs, batch, steps, warmup, peers = list(SEED000), args.batch or 128, args.steps or 20, args.warmup or 5, \
            GPU_PEERS
    else:
        profile = Profile("cpu", img_size=64, precision="fp32", channels_last=False, needs_cuda=False)
        archs, batch, steps, warmup, peers = ["resnet18", "test_resnet"], args.batch or 32, args.steps or 8, \
            args.warmup or 2, CPU_PEERS
    archs = args.archs.split(",") if args.archs else archs
    note = (f"end-to-end trainer step at {profile.img_size}x{profile.img_size}, batch {batch}, {profile.precision}"
            f"{' + channels_last' if profile.channels_last else ''}, augmentation + recipe preprocessing + loss + "
            "optimizer step, validation excluded")
    if not gpu:
        note += (f"; {args.threads} thread(s) on a 2-core machine shared with other jobs: figures vary by 2x "
                 "with the load")
    records, rates = [], {}
    for arch in archs:
        result = measure(arch, profile=profile, device=device, batch=batch, steps=steps, warmup=warmup,
                         compile_mode=False)
        rates[arch] = result["img_per_s"]
        print(f"{arch:24s} {result['img_per_s']:9.1f} img/s  ({result['seconds']:.1f} s timed, "
              f"{result['warmup_seconds']:.1f} s setup+warm-up)", flush=True)
        records.append(record(f"train_throughput/{arch}", device, result["img_per_s"], "img/s",
                              **with_peer(arch, peers), arch=arch, img_size=profile.img_size, batch=batch,
                              steps=steps, precision=profile.precision, recipe=result["recipe"],
                              preprocess=result["preprocess"], seconds=result["seconds"]))
        if "peak_gib" in result:
            records.append(record(f"peak_gpu_memory/{arch}", device, result["peak_gib"], "GiB", arch=arch,
                                  batch=batch, note="torch.cuda.max_memory_allocated during warm-up + timed steps"))
        if args.compile and gpu and get_architecture_meta(arch).get("compile"):
            compiled = measure(arch, profile=profile, device=device, batch=batch, steps=steps, warmup=warmup,
                               compile_mode=True)
            records.append(record(f"train_throughput_compiled/{arch}", device, compiled["img_per_s"], "img/s",
                                  **with_peer(arch, GPU_COMPILED_PEERS), arch=arch, batch=batch,
                                  compile_seconds=compiled["warmup_seconds"], note="torch.compile (inductor)"))
    records.append(protocol_estimate(rates, device, "from the measured per-epoch times."))
    print(write_results("train", device, records, note=note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
