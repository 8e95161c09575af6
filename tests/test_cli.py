"""The xai-harness command line: zoo table, list kinds, train, error exits."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness.data
from harness import cli
from harness.models.testing import install_toy


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    if importlib.util.find_spec("harness.data.synth_cxr") is None:
        monkeypatch.setattr(harness.data, "_import_builtin", lambda: None)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_zoo_table(capsys, tmp_path):
    code, out, _ = run(capsys, "zoo", "--profile", "cpu", "--checkpoint-dir", str(tmp_path))
    assert code == 0
    for name in ("resnet18", "resnet50", "vgg16", "densenet121", "efficientnet_b0", "vit_small", "vit_base",
                 "resnet18_shortcut", "pneumothorax_cnn", "vit_base_patch16_224"):
        assert name in out
    assert "11.2M" in out and "85.3M" in out  # resnet18, vit_base parameter counts


def test_list_kinds(capsys):
    install_toy()
    code, out, _ = run(capsys, "list", "architectures")
    assert code == 0 and "resnet18" in out and "vit_small_patch16_224" in out and "pooled" in out
    code, out, _ = run(capsys, "list", "recipes")
    assert code == 0 and "pneumothorax_cnn" in out and "pneumothorax_vit" in out
    code, out, _ = run(capsys, "list", "datasets")
    assert code == 0 and "toy-blobs" in out


def test_list_every_kind_shows_categories(capsys):
    for kind, category in [("metrics", "localisation"), ("checks", "shortcut"), ("explainers", "control"),
                           ("perturbations", "perturbation")]:
        code, out, _ = run(capsys, "list", kind)
        assert code == 0 and category in out, kind


def test_list_is_extended_by_one_dict_entry(capsys, monkeypatch):
    monkeypatch.setitem(cli.LISTERS, "explainers", lambda: [("gradcam", "cam", "Grad-CAM (Selvaraju et al. 2017)")])
    code, out, _ = run(capsys, "list", "explainers")
    assert code == 0 and "gradcam" in out and "Selvaraju" in out


def test_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["list", "spells"])
    assert info.value.code == 2
    assert "architectures" in capsys.readouterr().err


def test_unknown_model_exits_2_with_known_names(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--model", "resnet9000", "--checkpoint-dir", str(tmp_path))
    assert code == 2
    assert "unknown model 'resnet9000'" in err and "resnet18_shortcut" in err and "vit_base" in err


def test_train_then_reuse(capsys, tmp_path, monkeypatch):
    install_toy()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(
        "models:\n  tiny:\n    architecture: test_resnet\n    dataset: toy-blobs\n"
        "    dataset_options: {size: 16, n: 32}\n    recipe: toy\n    seed: 0\n"
    )
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(zoo))
    store = tmp_path / "ckpt"
    code, out, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store),
                         "--no-progress")
    assert code == 0
    assert "training tiny (cpu profile) — first use" in err
    assert "val auroc" in out and "epoch-002.safetensors" in out
    assert len(list(store.glob("tiny-cpu-*/epoch-002.safetensors"))) == 1
    code, out, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store))
    assert code == 0 and "already trained" in err and "first use" not in err


def test_gpu_profile_without_cuda_exits_2(capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, "train", "--model", "resnet18", "--profile", "gpu", "--checkpoint-dir", str(tmp_path))
    assert code == 2 and "needs a CUDA device" in err
    assert not list(tmp_path.iterdir())  # failed before creating a lock or run directory


def test_importing_the_cli_does_not_import_torch():
    probe = "import sys, harness.cli, harness.models, harness.models.recipes; print('torch' in sys.modules)"
    repo = str(Path(__file__).resolve().parents[1])  # importable without an install
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=repo)
    assert result.stdout.strip() == "False"


# --- the store: verified claims, doctor, --repair; harness errors are one line, never a traceback

TINY_ZOO = ("models:\n  tiny:\n    architecture: test_resnet\n    dataset: toy-blobs\n"
            "    dataset_options: {size: 16, n: 32}\n    recipe: toy\n    seed: 0\n")


@pytest.fixture
def tiny_store(capsys, tmp_path, monkeypatch):
    """A store holding the trained ``tiny`` toy model (its run folder is returned)."""
    install_toy()
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(TINY_ZOO)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(zoo))
    store = tmp_path / "ckpt"
    code, _, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store),
                       "--no-progress")
    assert code == 0, err
    return store, next(store.glob("tiny-cpu-*/"))


def test_train_refuses_a_damaged_run_until_repair(capsys, tiny_store):
    store, run_dir = tiny_store
    (run_dir / "epoch-002.safetensors").unlink()
    args = ("train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store), "--no-progress")
    code, out, err = run(capsys, *args)
    assert code == 1 and "already trained" not in err and "Traceback" not in err + out
    assert "error: tiny (cpu profile): the checkpoint store says it is trained, but" in err
    assert "final weights epoch-002.safetensors are missing" in err and "--repair" in err
    code, out, err = run(capsys, *args, "--repair")
    assert code == 0 and "repair of a damaged run" in err and (run_dir / "epoch-002.safetensors").is_file()
    code, _, err = run(capsys, *args)
    assert code == 0 and "already trained (weights verified)" in err


def test_truncated_run_record_is_one_line_not_a_traceback(capsys, tiny_store):
    store, run_dir = tiny_store
    record = (run_dir / "run.json").read_text()
    (run_dir / "run.json").write_text(record[:40])
    code, out, err = run(capsys, "train", "--model", "tiny", "--profile", "cpu", "--checkpoint-dir", str(store))
    assert code == 1 and "Traceback" not in err + out
    assert "cannot read run record" in err and "--repair" in err


def test_doctor_lists_damaged_runs_and_repairs_or_removes_them(capsys, tiny_store):
    store, run_dir = tiny_store
    code, out, err = run(capsys, "doctor", "--checkpoint-dir", str(store))
    assert code == 0 and "trained" in out and "1 run(s)" in err and "none damaged" in err
    (run_dir / "run.json").write_text("{")  # unreadable: the model is found by matching the zoo
    code, out, err = run(capsys, "doctor", "--checkpoint-dir", str(store))
    assert code == 1 and "damaged" in out and "cannot read run record" in out
    assert "1 damaged run(s)" in err and "doctor --repair" in err
    code, out, err = run(capsys, "doctor", "--checkpoint-dir", str(store), "--repair", "--no-progress")
    assert code == 0, err
    assert "repairing" in err and json.loads((run_dir / "run.json").read_text())["completed"] is True
    (run_dir / "epoch-001.safetensors").unlink()
    code, _, err = run(capsys, "doctor", "--checkpoint-dir", str(store), "--remove")
    assert code == 0 and f"removed {run_dir}" in err and not run_dir.exists()


def test_harness_errors_are_one_line_bugs_keep_their_traceback(capsys, monkeypatch):
    from harness.models.checkpoints import CheckpointError
    from harness.suites import SuiteError

    def raising(error):
        def command(args):
            raise error
        return command

    for error, code in [(CheckpointError("x.safetensors: sha256 mismatch"), 1), (SuiteError("s.yaml", 3, "bad"), 2),
                        (PermissionError(13, "Permission denied", "/ro"), 1)]:
        monkeypatch.setattr(cli, "cmd_list", raising(error))
        got, out, err = run(capsys, "list", "checks")
        assert got == code and err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1, err
    monkeypatch.setattr(cli, "cmd_list", raising(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["list", "checks"])
