"""Checkpoint store: round trips, integrity errors, manifests, atomic writes, train-once-under-a-lock."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time

import pytest
import torch

import harness.data
from harness.models import checkpoints as ckpt
from harness.models.checkpoints import (
    CheckpointError,
    CheckpointStore,
    TrainedRun,
    atomic_write_bytes,
    default_root,
    load_checkpoint,
)
from harness.models.provision import ensure_trained
from harness.models.recipes import get_recipe
from harness.models.testing import toy_entry


pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainedRun:
    """One tiny run shared by the read-only tests (2 epochs, 64 images of 32x32, test_resnet)."""
    if importlib.util.find_spec("harness.data.synth_cxr") is None:
        harness.data._import_builtin, saved = (lambda: None), harness.data._import_builtin
    else:
        saved = harness.data._import_builtin
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = CheckpointStore(tmp_path_factory.mktemp("store"))
        return ensure_trained(toy_entry(size=32, n=64), profile="cpu", store=store, progress=False)
    finally:
        harness.data._import_builtin = saved
        torch.set_num_threads(threads)


def test_run_layout_and_history(trained):
    assert trained.completed and trained.epochs == [1, 2] and trained.last_epoch == 2
    assert trained.run_dir.name.startswith("toy-cpu-") and len(trained.run_dir.name.split("-")[-1]) == 8
    names = sorted(p.name for p in trained.run_dir.iterdir())
    assert names == ["epoch-001.json", "epoch-001.safetensors", "epoch-002.json", "epoch-002.safetensors", "run.json"]
    assert (trained.run_dir.parent / (trained.run_dir.name + ".lock")).exists()
    for row in trained.history:
        assert {"epoch", "train_loss", "val_loss", "val_auroc", "val_accuracy", "epoch_seconds",
                "images_per_second"} <= set(row)
    assert trained.checkpoint() == trained.checkpoint(-1) == trained.run_dir / "epoch-002.safetensors"
    assert trained.checkpoint(-2) == trained.checkpoint(1) == trained.run_dir / "epoch-001.safetensors"
    with pytest.raises(CheckpointError, match="epoch 7"):
        trained.checkpoint(7)
    with pytest.raises(CheckpointError, match="only epochs"):
        trained.checkpoint(-3)


def test_manifest_fields(trained):
    manifest = trained.manifest()
    assert manifest["architecture"] == "test_resnet" and manifest["img_size"] == 32 and manifest["num_classes"] == 2
    assert manifest["dataset"] == {"name": "toy-blobs", "options": {"size": 32, "n": 64}, "version": None,
                                   "train_config": {"size": 32, "n": 64, "seed": 0}}
    assert manifest["recipe"]["name"] == "toy" and manifest["recipe"]["values"]["epochs"] == 2
    assert manifest["profile"] == "cpu" and manifest["seed"] == 0 and manifest["epoch"] == 2
    assert manifest["metrics"]["val_auroc"] == trained.history[-1]["val_auroc"]
    assert manifest["sha256"] == ckpt.file_sha256(trained.checkpoint())
    assert manifest["versions"]["torch"] == torch.__version__ and "timm" in manifest["versions"]
    assert manifest["target_layer"] == "backbone.layer1"  # test_resnet at 32 px: the stride-4 stage is 8x8


def test_round_trip_is_bit_identical(trained, tmp_path):
    from safetensors.torch import load_file

    model, manifest = load_checkpoint(trained.checkpoint())
    assert not model.training and manifest["epoch"] == 2
    saved = load_file(str(trained.checkpoint()))
    state = model.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) and state[k].dtype == saved[k].dtype for k in saved)
    previous = trained.load(-2)
    assert any(not torch.equal(previous.state_dict()[k], state[k]) for k in state)


def copy_checkpoint(trained: TrainedRun, tmp_path):
    weights = tmp_path / "epoch-002.safetensors"
    weights.write_bytes(trained.checkpoint().read_bytes())
    weights.with_suffix(".json").write_text(trained.checkpoint().with_suffix(".json").read_text())
    return weights


def test_sha256_mismatch_names_file_and_hashes(trained, tmp_path):
    weights = copy_checkpoint(trained, tmp_path)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    expected = json.loads(weights.with_suffix(".json").read_text())["sha256"]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(weights)
    message = str(info.value)
    assert str(weights) in message
    assert f"sha256 mismatch: expected {expected}, file has {ckpt.file_sha256(weights)}" in message


def rewrite_manifest(weights, **changes):
    path = weights.with_suffix(".json")
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_architecture_mismatch(trained, tmp_path):
    weights = copy_checkpoint(trained, tmp_path)
    rewrite_manifest(weights, architecture="test_vit")
    with pytest.raises(CheckpointError, match=r"does not match architecture 'test_vit'.*(missing|unexpected)") as info:
        load_checkpoint(weights)
    assert str(weights) in str(info.value)
    rewrite_manifest(weights, architecture="resnet9000")
    with pytest.raises(CheckpointError, match=r"'resnet9000' is not registered; known: .*resnet18"):
        load_checkpoint(weights)


def test_shape_mismatch_and_missing_manifest(trained, tmp_path):
    weights = copy_checkpoint(trained, tmp_path)
    rewrite_manifest(weights, num_classes=3)
    with pytest.raises(CheckpointError, match=r"shape \(2, 96\) in file, \(3, 96\)"):
        load_checkpoint(weights)
    weights.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="manifest epoch-002.json is missing"):
        load_checkpoint(weights)


def test_atomic_write_keeps_old_file_when_replace_fails(tmp_path, monkeypatch):
    target = tmp_path / "weights.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]  # temp file cleaned up


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("XAI_HARNESS_CHECKPOINTS", str(tmp_path / "a"))
    assert default_root() == tmp_path / "a"
    monkeypatch.delenv("XAI_HARNESS_CHECKPOINTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "xai-harness" / "checkpoints"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(default_root()).endswith(os.path.join(".cache", "xai-harness", "checkpoints"))
    assert CheckpointStore().root == default_root()


def count_trainings(monkeypatch) -> list[str]:
    from harness.models import trainer

    calls: list[str] = []
    real = trainer.train_locked

    def counting(entry, **kwargs):
        calls.append(entry.name)
        return real(entry, **kwargs)

    monkeypatch.setattr(trainer, "train_locked", counting)
    return calls


def test_ensure_trained_trains_once_then_reuses(tmp_path, monkeypatch):
    calls = count_trainings(monkeypatch)
    store = CheckpointStore(tmp_path)
    entry = toy_entry("once", size=16, n=32)
    first = ensure_trained(entry, profile="cpu", store=store, progress=False)
    mtime = first.checkpoint().stat().st_mtime_ns
    second = ensure_trained(entry, profile="cpu", store=store, progress=False)
    assert calls == ["once"] and second.run_dir == first.run_dir
    assert second.checkpoint().stat().st_mtime_ns == mtime
    # a changed configuration is a different run
    third = ensure_trained(toy_entry("once", size=16, n=32, seed=1), profile="cpu", store=store, progress=False)
    assert calls == ["once", "once"] and third.run_dir != first.run_dir


def test_waiter_reuses_the_run_finished_under_the_lock(tmp_path, monkeypatch, capsys):
    from harness.models.trainer import train_locked

    calls = count_trainings(monkeypatch)
    store = CheckpointStore(tmp_path)
    entry = toy_entry("locked", size=16, n=32)
    run_dir = store.run_dir(entry, get_recipe(entry.recipe, "cpu"), "cpu")
    results: list[TrainedRun] = []
    with store.lock(run_dir):  # another "process" is training this model
        waiter = threading.Thread(
            target=lambda: results.append(ensure_trained(entry, profile="cpu", store=store, progress=False)))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive() and not results  # blocked on the lock
        train_locked(entry, recipe=get_recipe(entry.recipe, "cpu"), profile="cpu", store=store, progress=False)
    waiter.join(timeout=60)
    assert results and results[0].completed and results[0].run_dir == run_dir
    assert calls == []  # the waiter did not train again
    assert "waiting for another process training locked (cpu profile)" in capsys.readouterr().err


def test_interrupted_run_is_retrained(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    entry = toy_entry("crashy", size=16, n=32)
    recipe = get_recipe(entry.recipe, "cpu")
    writer = store.start_run(entry, recipe, "cpu", {"size": 16})
    (writer.run_dir / "epoch-009.safetensors").write_bytes(b"junk")
    assert store.completed_run(writer.run_dir) is None
    run = ensure_trained(entry, profile="cpu", store=store, progress=False)
    assert run.completed and run.epochs == [1, 2]
    assert not (writer.run_dir / "epoch-009.safetensors").exists()


def test_dataset_version_changes_the_run(tmp_path, monkeypatch):
    from harness.data import DATASETS

    store = CheckpointStore(tmp_path)
    entry = toy_entry("versioned")
    recipe = get_recipe(entry.recipe, "cpu")
    before = store.run_dir(entry, recipe, "cpu")
    monkeypatch.setitem(DATASETS._meta, entry.dataset, {"version": "toy/2"})
    assert ckpt.dataset_version(entry.dataset) == "toy/2"
    assert store.run_dir(entry, recipe, "cpu") != before


def test_keep_last_prunes_old_epochs(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    entry = toy_entry("pruned", size=16, n=32)
    recipe = get_recipe(entry.recipe, "cpu")
    writer = store.start_run(entry, recipe, "cpu", {})
    from harness.models.architectures import create_model

    model = create_model("test_resnet", img_size=16)
    for epoch in (1, 2, 3):
        writer.save_epoch(model, epoch, {"val_auroc": 0.5})
    run = writer.finish(1.0)
    assert run.epochs == [2, 3] and len(run.history) == 3
    assert not (run.run_dir / "epoch-001.safetensors").exists()
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointStore(tmp_path, keep_last=1)


def test_epoch_writes_run_on_the_writer_thread_in_order_and_flush_waits(tmp_path, monkeypatch):
    """save_epoch returns before its files are written; flush() waits; the files are those the model had
    when save_epoch was called (later training does not leak into them), with a matching sha256."""
    from harness.models.architectures import create_model
    from harness.models.checkpoint_files import load_checkpoint

    store = CheckpointStore(tmp_path, keep_last=2)
    entry = toy_entry("threaded", size=16, n=32)
    writer = store.start_run(entry, get_recipe(entry.recipe, "cpu"), "cpu", {})
    gate = threading.Event()
    real = ckpt.atomic_write_bytes

    def slow(path, data):
        gate.wait(10)
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", slow)
    model = create_model("test_resnet", img_size=16)
    expected = {}
    for epoch in (1, 2, 3):
        writer.save_epoch(model, epoch, {"val_auroc": 0.5})
        expected[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)  # "training" after the call: must not reach that epoch's file
    assert not (writer.run_dir / "epoch-001.safetensors").exists()  # queued, not yet written
    gate.set()
    writer.flush()
    assert not (writer.run_dir / "epoch-001.safetensors").exists()  # pruned (keep_last=2) in order
    for epoch in (2, 3):
        loaded, _ = load_checkpoint(writer.run_dir / f"epoch-{epoch:03d}.safetensors")
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected[epoch].items())
    assert json.loads((writer.run_dir / "run.json").read_text())["epochs"] == [2, 3]
    run = writer.finish(1.0)
    assert run.completed and run.epochs == [2, 3]


def _writer_past_epoch_1(tmp_path, name: str):
    """A run writer whose epoch 1 is on disk, and its model."""
    from harness.models.architectures import create_model

    store = CheckpointStore(tmp_path)
    entry = toy_entry(name, size=16, n=32)
    writer = store.start_run(entry, get_recipe(entry.recipe, "cpu"), "cpu", {})
    model = create_model("test_resnet", img_size=16)
    writer.save_epoch(model, 1, {"val_auroc": 0.5})
    writer.flush()
    return writer, model


def test_a_failed_background_write_is_raised_and_stops_later_writes(tmp_path, monkeypatch):
    writer, model = _writer_past_epoch_1(tmp_path, "full-disk")
    real = ckpt.atomic_write_bytes

    def full(path, data):
        if path.name == "epoch-002.safetensors":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    writer.save_epoch(model, 2, {"val_auroc": 0.6})
    with pytest.raises(CheckpointError, match="No space left on device"):
        writer.flush()
    with pytest.raises(CheckpointError, match="earlier checkpoint write failed"):
        writer.save_epoch(model, 3, {"val_auroc": 0.7})
    record = json.loads((writer.run_dir / "run.json").read_text())
    assert record["epochs"] == [1] and not record["completed"]  # run.json never names the missing epoch
    assert not (writer.run_dir / "epoch-002.json").exists()
    writer.close(quiet=True)  # a failing run closes without hiding its own error


def test_writes_queued_behind_a_failed_one_are_dropped_even_after_the_error_was_raised(tmp_path, monkeypatch):
    """Epoch 3 was queued before epoch 2's write failed; the training thread raises the failure before the
    writer thread reaches epoch 3: epoch 3 must still not be written (run.json would name a missing epoch 2)."""
    writer, model = _writer_past_epoch_1(tmp_path, "queued")
    real, failing, hold = ckpt.atomic_write_bytes, threading.Event(), threading.Event()

    def full(path, data):
        if path.name == "epoch-002.safetensors":
            failing.wait(10)
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    writer.save_epoch(model, 2, {"val_auroc": 0.6})
    held = writer._writer.submit(hold.wait, 10)  # keeps the writer thread between epoch 2 and epoch 3
    writer.save_epoch(model, 3, {"val_auroc": 0.7})
    failing.set()
    deadline = time.monotonic() + 10
    while writer._failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(CheckpointError, match="No space left"):
        writer._raise_failure()  # what the next save_epoch does first
    hold.set()
    held.result()
    with pytest.raises(CheckpointError, match="earlier checkpoint write failed"):
        writer.flush()
    assert not (writer.run_dir / "epoch-003.safetensors").exists()
    assert json.loads((writer.run_dir / "run.json").read_text())["epochs"] == [1]
    writer.close(quiet=True)


# --- the store vouches only for what it verified


def damaged_copy(trained: TrainedRun, tmp_path):
    """A copy of the shared run in its own store, to damage."""
    import shutil

    store = CheckpointStore(tmp_path / "store")
    shutil.copytree(trained.run_dir, store.root / trained.run_dir.name)
    return store, store.root / trained.run_dir.name


def test_a_run_is_trained_only_with_intact_final_weights(trained, tmp_path):
    store, run_dir = damaged_copy(trained, tmp_path)
    assert store.health(run_dir).status == "trained" and store.completed_run(run_dir).epochs == [1, 2]
    weights = run_dir / "epoch-002.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    health = store.health(run_dir)
    assert health.status == "damaged" and store.completed_run(run_dir) is None
    assert "epoch-002.safetensors: sha256 mismatch: manifest says" in health.problems[0]
    weights.unlink()
    assert store.health(run_dir).problems == ("final weights epoch-002.safetensors are missing",)
    assert "is damaged: final weights epoch-002.safetensors are missing" in store.health(run_dir).describe()


def test_missing_kept_epoch_and_unreadable_run_record_are_damage(trained, tmp_path):
    store, run_dir = damaged_copy(trained, tmp_path)
    (run_dir / "epoch-001.json").unlink()
    assert store.health(run_dir).problems == ("kept epoch 1 (epoch-001.safetensors or its manifest) is missing",)
    record = (run_dir / "run.json").read_text()
    (run_dir / "run.json").write_text(record[: len(record) // 2])  # truncated by a crash or a full disk
    health = store.health(run_dir)
    assert health.status == "damaged" and "cannot read run record" in health.problems[0]
    (run_dir / "run.json").write_text(json.dumps({"name": "toy"}))
    assert "run record lacks or garbles" in store.health(run_dir).problems[0]
    (run_dir / "run.json").unlink()
    assert store.health(run_dir).problems == ("run.json is missing",)
    assert [h.status for h in store.survey()] == ["damaged"] and store.runs() == []
    assert store.health(tmp_path / "nothing-here").status == "absent"


def test_damaged_run_is_an_error_naming_the_fix_and_repair_retrains(tmp_path, monkeypatch):
    from harness.models.checkpoints import DamagedRunError

    calls = count_trainings(monkeypatch)
    store = CheckpointStore(tmp_path)
    entry = toy_entry("fragile", size=16, n=32)
    run = ensure_trained(entry, profile="cpu", store=store, progress=False)
    run.checkpoint().unlink()
    with pytest.raises(DamagedRunError) as info:
        ensure_trained(entry, profile="cpu", store=store, progress=False)
    message = str(info.value)
    assert "fragile (cpu profile)" in message and "final weights epoch-002.safetensors are missing" in message
    assert "xai-harness train --model fragile --profile cpu --repair" in message and "doctor --repair" in message
    assert calls == ["fragile"]  # not silently retrained
    repaired = ensure_trained(entry, profile="cpu", store=store, progress=False, repair=True)
    assert calls == ["fragile", "fragile"] and repaired.checkpoint().is_file()
    assert store.health(repaired.run_dir).status == "trained"
    store.remove_run(repaired.run_dir)
    assert store.health(repaired.run_dir).status == "absent"
