"""The train and zoo commands' model-stage options: truncated sizes, --pretrained, --ddp, errors."""

from __future__ import annotations

import importlib.util

import pytest
import timm
import torch
from safetensors.torch import save_file

import harness.data
from harness import cli
from harness.models.testing import install_toy

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_ZOO = ("models:\n  tiny:\n    architecture: test_resnet\n    dataset: toy-blobs\n"
            "    dataset_options: {size: 16, n: 32}\n    recipe: toy\n    seed: 0\n")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    if importlib.util.find_spec("harness.data.synth_cxr") is None:
        monkeypatch.setattr(harness.data, "_import_builtin", lambda: None)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_zoo_shows_truncated_sizes_and_init(capsys, tmp_path):
    code, out, _ = run(capsys, "zoo", "--profile", "cpu", "--checkpoint-dir", str(tmp_path))
    assert code == 0 and "times smaller" in out and "init" in out
    row = next(line for line in out.splitlines() if "resnet18_minus2 " in line)
    assert "0.7M" in row and "16.5x" in row and "random" in row


def test_train_with_pretrained_file(capsys, tmp_path, monkeypatch):
    install_toy()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(TINY_ZOO)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(zoo))
    weights = tmp_path / "imagenet.safetensors"
    source = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    store = tmp_path / "ckpt"
    code, out, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store),
                         "--no-progress", "--pretrained", str(weights))
    assert code == 0, err
    manifest = next(store.glob("tiny-cpu-*/epoch-002.json")).read_text()
    assert str(weights) in manifest
    code, _, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store),
                       "--no-progress", "--pretrained", str(tmp_path / "absent.safetensors"))
    assert code == 1 and "absent.safetensors" in err and "never downloaded" in err


def test_ddp_outside_torchrun_is_a_usage_error(capsys, tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "train", "--model", "resnet18", "--profile", "cpu", "--ddp",
                       "--checkpoint-dir", str(tmp_path))
    assert code == 2 and "torchrun" in err


def test_diverging_training_exits_1(capsys, tmp_path, monkeypatch):
    from harness.models import trainer

    install_toy()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(TINY_ZOO)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(zoo))
    monkeypatch.setattr(trainer, "classification_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    code, _, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir",
                       str(tmp_path / "ckpt"), "--no-progress")
    assert code == 1 and "became nan at epoch 1, step 1" in err
