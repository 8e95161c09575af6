"""Pretrained weights from a local safetensors file: 1-channel stems, kept heads, manifests, hashes."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file

from harness.models.architectures import create_model
from harness.models.checkpoints import CheckpointStore, config_hash
from harness.models.provision import ensure_trained
from harness.models.pretrained import PretrainedError, load_pretrained, read_weights
from harness.models.recipes import get_recipe
from harness.models.testing import toy_entry

pytestmark = pytest.mark.usefixtures("one_thread")


def imagenet_like(tmp_path, name: str, **kwargs):
    """A randomly initialised 3-channel, 1000-class timm model saved as safetensors."""
    torch.manual_seed(123)
    source = timm.create_model(name, pretrained=False, **kwargs)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    return path, source.state_dict()


def test_stem_is_summed_and_other_weights_match(tmp_path):
    path, source = imagenet_like(tmp_path, "resnet18")
    torch.manual_seed(0)
    model = create_model("resnet18", img_size=64)
    head_before = model.backbone.fc.weight.clone()
    report = load_pretrained(model, path)
    target = model.backbone.state_dict()
    assert torch.allclose(target["conv1.weight"], source["conv1.weight"].sum(dim=1, keepdim=True))
    assert target["conv1.weight"].shape == (64, 1, 7, 7)
    for key in target:
        if key not in ("conv1.weight", "fc.weight", "fc.bias"):
            assert torch.equal(target[key], source[key]), key
    assert torch.equal(model.backbone.fc.weight, head_before)  # [2,512] vs [1000,512]: left at init
    assert report.adapted == ("conv1.weight",) and set(report.kept_init) == {"fc.weight", "fc.bias"}
    assert not report.missing and not report.unexpected and len(report.loaded) == len(target) - 3
    assert len(report.sha256) == 64 and "1 stems summed" in report.summary()


def test_truncated_model_ignores_removed_blocks(tmp_path):
    path, source = imagenet_like(tmp_path, "resnet18")
    model = create_model("resnet18_minus2", img_size=64)
    report = load_pretrained(model, path)
    assert any(k.startswith("layer4.") for k in report.unexpected)
    assert torch.equal(model.backbone.layer2[0].conv1.weight, source["layer2.0.conv1.weight"])


def test_torchvision_state_dict_with_prefix(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model("tv_resnet18", img_size=64)
    report = load_pretrained(model, path)
    assert torch.allclose(model.backbone.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert report.adapted == ("conv1.weight",)


def test_vit_patch_embedding_and_position_embedding(tmp_path):
    path, source = imagenet_like(tmp_path, "test_vit")  # 3 channels, 10x10 patch grid
    model = create_model("test_vit", img_size=64)  # 4x4 grid
    report = load_pretrained(model, path)
    weight = model.backbone.patch_embed.proj.weight
    assert torch.allclose(weight, source["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert report.resampled == ("pos_embed",) and model.backbone.pos_embed.shape == (1, 17, 64)
    assert torch.equal(model.backbone.pos_embed[:, :1], source["pos_embed"][:, :1])  # class token kept


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedError, match="no such file.*never downloaded"):
        read_weights(tmp_path / "missing.safetensors")
    pickle_file = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(1)}, pickle_file)
    with pytest.raises(PretrainedError, match="not a safetensors file"):
        read_weights(pickle_file)
    other = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(3)}, str(other))
    with pytest.raises(PretrainedError, match="no tensor matches architecture 'test_resnet'"):
        load_pretrained(create_model("test_resnet", img_size=32), other)


def test_training_from_a_pretrained_file(tmp_path):
    """The zoo entry's file is loaded before training, recorded in the manifest and in the hash."""
    path, source = imagenet_like(tmp_path, "test_resnet")
    store = CheckpointStore(tmp_path / "store")
    plain = toy_entry("pre", size=16, n=32)
    entry = dataclasses.replace(plain, pretrained=str(path))
    recipe = get_recipe(entry.recipe, "cpu")
    assert config_hash(entry, recipe, "cpu") != config_hash(plain, recipe, "cpu")
    frozen = dataclasses.replace(recipe, trainable_stages=0, epochs=1)  # only the head moves
    from harness.models.trainer import train_locked

    run = train_locked(entry, recipe=frozen, profile="cpu", store=store, progress=False)
    manifest = run.manifest()
    assert manifest["pretrained"]["path"] == str(path) and len(manifest["pretrained"]["sha256"]) == 64
    trained = load_file(str(run.checkpoint()))
    assert torch.equal(trained["backbone.layer1.0.conv1.weight"], source["layer1.0.conv1.weight"])
    assert torch.equal(trained["backbone.layer1.0.bn1.running_mean"], source["layer1.0.bn1.running_mean"])
    assert store.run_dir(entry, frozen, "cpu") == run.run_dir
    save_file({k: v.contiguous() + 1 for k, v in source.items() if v.is_floating_point()}, str(path))
    assert store.run_dir(entry, frozen, "cpu") != run.run_dir  # new file content -> new run


def test_missing_pretrained_file_fails_before_training(tmp_path):
    entry = toy_entry("nofile", size=16, n=32, pretrained=str(tmp_path / "absent.safetensors"))
    with pytest.raises(PretrainedError, match="absent.safetensors"):
        ensure_trained(entry, profile="cpu", store=CheckpointStore(tmp_path), progress=False)
