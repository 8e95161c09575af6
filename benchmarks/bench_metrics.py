"""Metric engine vs Quantus 0.6.0 on the same inputs: MPRT, MaxSensitivity, PointingGame.

    python benchmarks/bench_metrics.py            # GPU if present: resnet18 at 224 (PERF.md's setting)
    python benchmarks/bench_metrics.py --quick    # CPU: resnet18 at 64x64, fewer images

Input-gradient explainer, random-init weights. Each record gives our time, Quantus' time, the
speed-up (``ratio`` = Quantus seconds / ours) and the agreement on the same noise and seeds.
Writes benchmarks/results/metrics_<device>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import record, write_results  # noqa: I001
from harness.explain import create_explainer
from harness.metrics import pointing_game
from harness.metrics.randomisation import model_parameter_randomisation
from harness.models import create_model

GRADIENT = create_explainer("gradient")


def explain_fn(model, images, targets):
    return GRADIENT(model, images, targets)


def quantus_explain(model, inputs, targets, **kwargs):
    device = next(model.parameters()).device
    x, y = torch.as_tensor(inputs, device=device), torch.as_tensor(targets, device=device)
    return GRADIENT(model, x, y).detach().cpu().numpy()


def seconds(fn):
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def bench_mprt(model, x, y, device, records):
    import quantus

    a = explain_fn(model, x, y)
    metric = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, layer_order="top_down",
                          seed=42, abs=False, normalise=False, disable_warnings=True)
    t_q, theirs = seconds(lambda: metric(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                                         a_batch=a.detach().cpu().numpy(), explain_func=quantus_explain,
                                         device=str(device), channel_first=True, batch_size=x.shape[0]))
    theirs.pop("original")
    t_o, ours = seconds(lambda: model_parameter_randomisation(model, explain_fn, x, y, granularity="module",
                                                              seed=43, reseed="constant", reference=a))
    steps = [i for i, n in enumerate(ours.layers) if "model-level" not in n]
    diff = float(np.abs(ours.similarity[steps].cpu().numpy() - np.array(list(theirs.values()))).max())
    records.append(record(f"MPRT cascading, {len(steps)} layers, {x.shape[0]} images {x.shape[-1]}px", device,
                          t_o, "s", peer="quantus 0.6.0 MPRT", peer_value=t_q, agreement_max_abs_diff=diff))


def bench_pointing(model, x, y, device, records):
    import quantus

    masks = torch.zeros_like(x, dtype=torch.bool)
    masks[..., x.shape[-2] // 4: x.shape[-2] // 2, x.shape[-1] // 4: x.shape[-1] // 2] = True
    metric = quantus.PointingGame(disable_warnings=True)
    t_q, theirs = seconds(lambda: metric(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(), a_batch=None,
                                         s_batch=masks.cpu().numpy(), explain_func=quantus_explain,
                                         device=str(device), channel_first=True))
    t_o, ours = seconds(lambda: pointing_game(explain_fn(model, x, y), masks))
    same = bool(np.array_equal(ours.cpu().numpy().astype(bool), np.array(theirs, dtype=bool)))
    records.append(record(f"PointingGame incl. explanation, {x.shape[0]} images {x.shape[-1]}px", device, t_o, "s",
                          peer="quantus 0.6.0 PointingGame", peer_value=t_q, agreement_identical_hits=same))


def bench_max_sensitivity(model, x, y, device, records, n_samples: int = 10, radius: float = 0.2):
    """Ours draws the noise; Quantus replays exactly those noisy copies through its perturb_func."""
    import quantus

    from harness.metrics.robustness import sensitivity_samples

    maps = explain_fn(model, x, y)
    seen: list[torch.Tensor] = []

    def recording(images, targets):
        seen.append(images.detach())
        return explain_fn(model, images, targets)

    t_o, ours = seconds(lambda: sensitivity_samples(recording, x, y, maps=maps, n_samples=n_samples, radius=radius,
                                                    batch_size=x.shape[0], generator=torch.Generator().manual_seed(0)))
    replay = iter(list(torch.cat(seen).view(n_samples, *x.shape).cpu().numpy()))
    metric = quantus.MaxSensitivity(nr_samples=n_samples, lower_bound=radius, normalise=False, abs=False,
                                    return_nan_when_prediction_changes=False, disable_warnings=True,
                                    perturb_func=lambda arr, indices, **kw: next(replay).reshape(arr.shape))
    t_q, theirs = seconds(lambda: metric(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                                         a_batch=maps.detach().cpu().numpy(), explain_func=quantus_explain,
                                         device=str(device), batch_size=x.shape[0]))
    expected = ours.reduce("max").cpu().numpy()
    rel = float(np.max(np.abs(expected - np.array(theirs)) / np.abs(np.array(theirs))))
    records.append(record(f"MaxSensitivity ({n_samples} samples), {x.shape[0]} images {x.shape[-1]}px", device, t_o,
                          "s", peer="quantus 0.6.0 MaxSensitivity", peer_value=t_q, agreement_max_rel_diff=rel))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized run")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    size, n_mprt, n_point = (224, 32, 128) if device.type == "cuda" else (64, 8, 32)
    torch.manual_seed(0)
    model = create_model("resnet18", img_size=size).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_point, 1, size, size, generator=g).to(device)
    y = (torch.arange(n_point) % 2).to(device)
    records: list[dict] = []
    bench_pointing(model, x, y, device, records)
    bench_mprt(model, x[:n_mprt], y[:n_mprt], device, records)
    bench_max_sensitivity(model, x, y, device, records)
    for r in records:
        print(f"{r['name']}: ours {r['value']:.3f} s, Quantus {r['peer_value']:.3f} s ({r['ratio']:.1f}x)")
    print(write_results("metrics", device, records, note="input-gradient explainer, random-init resnet18"))

if __name__ == "__main__":
    main()
