"""Trainer: determinism on the CPU, profile handling, schedules, evaluation, the bf16/channels_last path."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from harness.models import trainer
from harness.models.checkpoints import CheckpointStore
from harness.models.recipes import Profile, ProfileUnavailableError, Recipe, get_recipe
from harness.models.testing import toy_entry, toy_imageset
from harness.models.trainer import default_profile, evaluate, lr_factor, train


pytestmark = pytest.mark.usefixtures("one_thread")



def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.checkpoint()))


def test_same_seed_gives_identical_weights_on_cpu(tmp_path):
    entry = toy_entry("det", size=32, n=64)
    a = train(entry, profile="cpu", store=CheckpointStore(tmp_path / "a"), progress=False)
    b = train(entry, profile="cpu", store=CheckpointStore(tmp_path / "b"), progress=False)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    c = train(toy_entry("det", size=32, n=64, seed=1), profile="cpu", store=CheckpointStore(tmp_path / "c"),
              progress=False)
    wc = weights(c)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_learns_the_toy_task_and_records_metrics(tmp_path):
    run = train(toy_entry("learn", size=32, n=64), profile="cpu", store=CheckpointStore(tmp_path), progress=True)
    last = run.history[-1]
    assert last["val_auroc"] > 0.75
    assert last["train_loss"] < run.history[0]["train_loss"] or last["train_loss"] < 0.5
    assert last["images_per_second"] > 0 and last["epoch_seconds"] > 0 and 0 <= last["val_accuracy"] <= 1
    assert run.wall_seconds > 0


def test_gpu_profile_without_cuda_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_profile() == "cpu"
    with pytest.raises(ProfileUnavailableError, match="needs a CUDA device"):
        train(toy_entry("gpu", size=16, n=16), profile="gpu", store=CheckpointStore(tmp_path), progress=False)


def test_bf16_channels_last_path_runs_on_cpu():
    """The gpu profile's numerics (bf16 autocast, channels_last) on the CPU, one epoch."""
    spec = Profile("gpu-sim", img_size=32, precision="bf16", channels_last=True, needs_cuda=False)
    recipe = get_recipe("toy", "cpu")
    fitter = trainer._Fitter(toy_entry(size=32, n=32), recipe, spec, torch.device("cpu"),
                             toy_imageset("train", size=32, n=32), toy_imageset("val", size=32, n=32))
    conv = next(m for m in fitter.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[2] > 1
    metrics = fitter.run_epoch(lambda: None)
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])


def test_lr_schedule():
    constant = Recipe("x", "cpu", "adam", lr=1.0, epochs=4, batch_size=8)
    assert [lr_factor(constant, s, 10) for s in (0, 17, 39)] == [1.0, 1.0, 1.0]
    cosine = Recipe("x", "cpu", "adamw", lr=1.0, epochs=4, batch_size=8, schedule="cosine", warmup_epochs=1)
    assert lr_factor(cosine, 0, 10) == pytest.approx(0.1)
    assert lr_factor(cosine, 9, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 10, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 25, 10) == pytest.approx(0.5)
    assert lr_factor(cosine, 40, 10) == pytest.approx(0.0)


def test_evaluate_matches_sklearn_and_handles_one_class():
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(0)
    from harness.models.architectures import create_model

    model = create_model("test_resnet", img_size=16)
    data = toy_imageset("val", size=16, n=20)
    result = evaluate(model, data.images, data.labels, batch_size=7)
    with torch.no_grad():
        probs = torch.softmax(model(data.as_float()), 1)[:, 1]
    assert result["auroc"] == pytest.approx(roc_auc_score(data.labels.numpy(), probs.numpy()))
    assert result["accuracy"] == pytest.approx(float(((probs > 0.5).long() == data.labels).float().mean()))
    ones = data.labels == 1
    assert math.isnan(evaluate(model, data.images[ones], data.labels[ones])["auroc"])


def test_validation_auroc_equals_sklearn_on_ties_without_importing_it():
    """The trainer's validation AUROC (which ranks the epochs) is sklearn's on tied scores too, and a
    training process never pays sklearn's or scipy's import (1-2 s each on this machine)."""
    import subprocess
    import sys

    from sklearn.metrics import roc_auc_score

    from harness.models.evaluation import _auroc

    gen = torch.Generator().manual_seed(3)
    for _ in range(200):
        y = torch.randint(0, 2, (40,), generator=gen).numpy()
        score = (torch.randint(0, 6, (40,), generator=gen) / 5).float().numpy()  # many ties
        if len(set(y.tolist())) == 2:
            assert _auroc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-15)
    code = ("import sys, torch; from harness.models.evaluation import evaluate; "
            "from harness.models.trainer import train; "
            "m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)); "
            "evaluate(m, torch.randint(0, 255, (8, 1, 4, 4), dtype=torch.uint8), torch.tensor([0, 1] * 4)); "
            "print(sorted(k for k in ('sklearn', 'scipy') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_rejects_non_binary_labels(tmp_path, monkeypatch):
    bad = toy_imageset("train", size=16, n=16)
    bad.labels[0] = 2
    monkeypatch.setattr(trainer, "load_dataset", lambda name, split, **o: bad)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        train(toy_entry("bad", size=16, n=16), profile="cpu", store=CheckpointStore(tmp_path), progress=False)


def test_batches_never_leave_a_single_image():
    assert trainer._batches(33, 16) == [(0, 16), (16, 32)]
    assert trainer._batches(34, 16) == [(0, 16), (16, 32), (32, 34)]
    assert trainer._batches(33, 16, keep_single=True)[-1] == (32, 33)


def test_a_run_ending_near_chance_is_warned_about_unless_it_is_meant_not_to_learn():
    from harness.models.trainer import did_not_learn

    stuck = {"val_auroc": 0.55, "train_loss": 0.6931}
    warning = did_not_learn(toy_entry("vgg"), stuck)
    assert "vgg ended near chance: val AUROC 0.550" in warning and "training loss 0.693" in warning
    assert did_not_learn(toy_entry("vgg"), {"val_auroc": 0.61, "train_loss": 0.5}) == ""  # it learned something
    assert did_not_learn(toy_entry("twin", dataset="shuffled-labels"), stuck) == ""  # the defect zoo's own
    assert did_not_learn(toy_entry("few", recipe="undertrained"), stuck) == ""
    assert did_not_learn(toy_entry("vgg"), {"val_auroc": float("nan")}) == ""  # one class in val: nothing to say
