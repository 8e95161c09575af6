"""Reliability: a killed run resumes to the same weights, NaN stops with a clear error, the store keeps
the last K epochs plus the best, training state round-trips exactly, compile/fused options."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from harness.models import trainer
from harness.models.architectures import create_model
from harness.models.checkpoints import CheckpointStore, TrainedRun, load_checkpoint
from harness.models.provision import ensure_trained
from harness.models.recipes import Profile, get_recipe
from harness.models.testing import toy_entry, toy_imageset
from harness.models.train_state import flatten, load_train_state, unflatten
from harness.models.trainer import TrainingDivergedError, compile_mode_for, train_locked

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS_PER_EPOCH = 4  # 64 toy images, batch 16


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(autouse=True)
def resume_after_every_epoch(monkeypatch):
    """The toy runs take seconds: write the resume state after every epoch (production: once a minute)."""
    monkeypatch.setattr(trainer, "RESUME_EVERY_SECONDS", 0.0)


@pytest.fixture
def fail_at(monkeypatch):
    """``fail_at(n, error)``: the n-th loss computation (1-based) raises ``error`` or returns it if a float."""
    def install(n: int, outcome):
        real, calls = trainer.classification_loss, {"n": 0}

        def loss(*args, **kwargs):
            calls["n"] += 1
            value = real(*args, **kwargs)
            if calls["n"] != n:
                return value
            if isinstance(outcome, BaseException):
                raise outcome
            return value * outcome
        monkeypatch.setattr(trainer, "classification_loss", loss)
        return lambda: monkeypatch.setattr(trainer, "classification_loss", real)
    return install


def test_killed_run_resumes_to_identical_weights(tmp_path, fail_at):
    entry = toy_entry("resumed", size=32, n=64)
    reference = ensure_trained(entry, profile="cpu", store=CheckpointStore(tmp_path / "a"), progress=False)
    store = CheckpointStore(tmp_path / "b")
    restore = fail_at(STEPS_PER_EPOCH + 3, KeyboardInterrupt("killed at step 3 of epoch 2"))
    with pytest.raises(KeyboardInterrupt):
        ensure_trained(entry, profile="cpu", store=store, progress=False)
    restore()
    run_dir = reference.run_dir.name
    state = load_train_state(store.root / run_dir)
    assert state is not None and state.epoch == 1 and state.step == STEPS_PER_EPOCH
    assert set(state.rng) == {"shuffle", "augment", "torch"} and state.optimizer["state"]
    resumed = ensure_trained(entry, profile="cpu", store=store, progress=False)
    assert same(weights(resumed.checkpoint()), weights(reference.checkpoint()))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in reference.history]
    assert resumed.completed and resumed.epochs == [1, 2]
    assert not (resumed.run_dir / "resume.json").exists()  # removed once the run completed


def test_resume_restores_the_kept_step_evaluations(tmp_path, fail_at):
    """A chextransfer-style run (top-K step checkpoints + soup) killed in epoch 2 ends identically."""
    entry = toy_entry("souped", size=32, n=64, recipe="chextransfer")
    recipe = dataclasses.replace(get_recipe("chextransfer", "cpu"), epochs=2, eval_every_steps=2, ensemble_top_k=2)
    reference = train_locked(entry, recipe=recipe, profile="cpu", store=CheckpointStore(tmp_path / "a"),
                             progress=False)
    store = CheckpointStore(tmp_path / "b")
    restore = fail_at(STEPS_PER_EPOCH + 3, RuntimeError("power cut"))
    with pytest.raises(RuntimeError, match="power cut"):
        train_locked(entry, recipe=recipe, profile="cpu", store=store, progress=False, resume=True)
    restore()
    resumed = train_locked(entry, recipe=recipe, profile="cpu", store=store, progress=False, resume=True)
    assert reference.final == resumed.final == "final.safetensors"
    assert [c["step"] for c in resumed.candidates] == [c["step"] for c in reference.candidates]
    assert same(weights(resumed.checkpoint()), weights(reference.checkpoint()))
    model, manifest = load_checkpoint(resumed.checkpoint())
    assert manifest["final_model"]["members"] and manifest["epoch"] == 2
    assert resumed.checkpoint(-1).name == "epoch-002.safetensors"


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, fail_at):
    entry = toy_entry("diverging", size=32, n=64)
    store = CheckpointStore(tmp_path)
    fail_at(STEPS_PER_EPOCH + 2, float("nan"))
    with pytest.raises(TrainingDivergedError) as info:
        ensure_trained(entry, profile="cpu", store=store, progress=False)
    err = info.value
    assert (err.epoch, err.step, err.global_step) == (2, 2, STEPS_PER_EPOCH + 2)
    message = str(err)
    assert "became nan at epoch 2, step 2 of 4 (global step 6)" in message and "epoch-001.safetensors" in message
    run = TrainedRun.from_dir(err.last_checkpoint.parent)
    assert not run.completed and run.epochs == [1] and store.completed_run(run.run_dir) is None
    model, manifest = load_checkpoint(err.last_checkpoint)  # the good checkpoint loads and is finite
    assert manifest["epoch"] == 1 and all(torch.isfinite(p).all() for p in model.parameters())


def test_inf_in_the_first_epoch_names_no_checkpoint(tmp_path, fail_at):
    fail_at(1, float("inf"))
    with pytest.raises(TrainingDivergedError, match=r"became inf at epoch 1, step 1 .*no epoch had completed"):
        ensure_trained(toy_entry("inf", size=16, n=32), profile="cpu", store=CheckpointStore(tmp_path),
                       progress=False)


def test_store_keeps_last_k_plus_best(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    entry = toy_entry("kept", size=16, n=32)
    writer = store.start_run(entry, get_recipe(entry.recipe, "cpu"), "cpu", {})
    model = create_model("test_resnet", img_size=16)
    for epoch, auroc in enumerate([0.6, 0.9, 0.7, float("nan"), 0.8], start=1):
        writer.save_epoch(model, epoch, {"val_auroc": auroc})
    run = writer.finish(1.0)
    assert run.epochs == [2, 4, 5] and run.best_epoch == 2
    assert sorted(p.name for p in run.run_dir.glob("*.safetensors")) == [
        "epoch-002.safetensors", "epoch-004.safetensors", "epoch-005.safetensors"]
    assert json.loads((run.run_dir / "run.json").read_text())["best_epoch"] == 2
    assert run.checkpoint() == run.run_dir / "epoch-005.safetensors"  # no soup: final = last epoch


def test_restart_without_resume_clears_leftovers(tmp_path, fail_at):
    entry = toy_entry("fresh", size=16, n=32)
    store = CheckpointStore(tmp_path)
    restore = fail_at(3, RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        ensure_trained(entry, profile="cpu", store=store, progress=False)
    restore()
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert (run_dir / "resume.json").exists()
    (run_dir / "resume.safetensors").write_bytes(b"corrupt")  # a damaged state is ignored, not trusted
    run = ensure_trained(entry, profile="cpu", store=store, progress=False)
    assert run.completed and run.epochs == [1, 2]


def test_train_state_round_trip_is_exact():
    model = create_model("test_resnet", img_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 16, 16)).sum().backward()
    optimizer.step()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(optimizer.state_dict(), "optim", tensors)
    restored = unflatten(json.loads(json.dumps(skeleton)), tensors)
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert restored["state"].keys() == original["state"].keys()
    for key, value in original["state"][0].items():
        assert torch.equal(restored["state"][0][key], value)
    with pytest.raises(TypeError):
        flatten({"x": object()}, "p", {})


def test_compiled_training_saves_the_plain_model():
    """torch.compile wraps the training forward only (backend 'eager' keeps this fast on the CPU)."""
    spec = Profile("cpu", img_size=32, precision="fp32", channels_last=False, needs_cuda=False)
    fitter = trainer._Fitter(toy_entry(size=32, n=32), get_recipe("toy", "cpu"), spec, torch.device("cpu"),
                             toy_imageset("train", size=32, n=32), toy_imageset("val", size=32, n=32),
                             compile_mode="eager")
    assert fitter.net is not fitter.model and hasattr(fitter.net, "_orig_mod")
    metrics = fitter.run_epoch(lambda: None)
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert not any("_orig_mod" in k for k in fitter.model.state_dict())


def test_compile_and_fused_only_on_cuda(monkeypatch):
    entry = toy_entry(architecture="vit_small_patch16_224")
    assert compile_mode_for(entry, torch.device("cuda")) and not compile_mode_for(entry, torch.device("cpu"))
    assert not compile_mode_for(dataclasses.replace(entry, compile=False), torch.device("cuda"))
    assert not compile_mode_for(toy_entry(architecture="resnet18"), torch.device("cuda"))
    assert compile_mode_for(dataclasses.replace(toy_entry(architecture="resnet18"), compile=True),
                            torch.device("cuda"))
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = trainer._optimizer(params, get_recipe("toy", "cpu"), torch.device("cpu"))
    assert not optimizer.param_groups[0].get("fused")


def test_resume_state_is_written_once_its_interval_has_passed(tmp_path, fail_at, monkeypatch):
    """With a long interval a short run writes no resume state (a kill restarts it); a run killed after an
    older state than its last epoch resumes from that state, dropping the later epoch, to the same weights."""
    entry = toy_entry("interval", size=32, n=64)
    recipe = dataclasses.replace(get_recipe(entry.recipe, "cpu"), epochs=3)
    reference = train_locked(entry, recipe=recipe, profile="cpu", store=CheckpointStore(tmp_path / "a"), progress=False)

    monkeypatch.setattr(trainer, "RESUME_EVERY_SECONDS", 3600.0)
    store = CheckpointStore(tmp_path / "b")
    restore = fail_at(2 * STEPS_PER_EPOCH + 2, KeyboardInterrupt("killed in epoch 3"))
    with pytest.raises(KeyboardInterrupt):
        train_locked(entry, recipe=recipe, profile="cpu", store=store, progress=False, resume=True)
    run_dir = store.run_dir(entry, recipe, "cpu")
    assert (run_dir / "epoch-002.safetensors").exists() and not (run_dir / "resume.json").exists()
    restore()

    saves = []
    real = trainer._Fitter._resume_due
    monkeypatch.setattr(trainer._Fitter, "_resume_due", lambda self, epoch: saves.append(epoch) or epoch == 1)
    restore = fail_at(2 * STEPS_PER_EPOCH + 2, KeyboardInterrupt("killed in epoch 3 again"))
    with pytest.raises(KeyboardInterrupt):   # from scratch; the state after epoch 1 only
        train_locked(entry, recipe=recipe, profile="cpu", store=store, progress=False, resume=True)
    assert load_train_state(run_dir).epoch == 1 and (run_dir / "epoch-002.safetensors").exists()
    restore()
    monkeypatch.setattr(trainer._Fitter, "_resume_due", real)
    resumed = train_locked(entry, recipe=recipe, profile="cpu", store=store, progress=False, resume=True)
    assert same(weights(resumed.checkpoint()), weights(reference.checkpoint()))
    assert resumed.epochs[-2:] == [2, 3] and saves[:2] == [1, 2]
