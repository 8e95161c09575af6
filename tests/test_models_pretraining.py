"""`pretrained: zoo:<name>`: another zoo run is trained first and its weights initialise the model (toy sizes)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from harness.models.checkpoint_files import read_manifest
from harness.models.checkpoints import CheckpointStore
from harness.models.pretraining import materialise_pretrained, pretraining_source
from harness.models.provision import ensure_trained
from harness.models.recipes import get_recipe
from harness.models.testing import install_toy
from harness.models.zoo import ZooError, get_zoo_entry

ZOO = """\
models:
  toy_pretrain:
    architecture: test_resnet
    dataset: toy-multilabel
    dataset_options: {n: 48, size: 32}
    recipe: toy
    seed: 0
  toy_probe:
    architecture: test_resnet
    dataset: toy-blobs
    dataset_options: {n: 48, size: 32}
    recipe: linear_probe
    pretrained: zoo:toy_pretrain
    seed: 0
  loop_a:
    architecture: test_resnet
    dataset: toy-blobs
    recipe: toy
    pretrained: zoo:loop_b
    seed: 0
  loop_b:
    architecture: test_resnet
    dataset: toy-blobs
    recipe: toy
    pretrained: zoo:loop_a
    seed: 0
  orphan:
    architecture: test_resnet
    dataset: toy-blobs
    recipe: toy
    pretrained: zoo:no_such_model
    seed: 0
"""


@pytest.fixture
def zoo(tmp_path, monkeypatch, one_thread):
    install_toy()
    path = tmp_path / "zoo.yaml"
    path.write_text(ZOO)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(path))
    return CheckpointStore(tmp_path / "ckpt")


def test_zoo_reference_is_kept_verbatim_by_the_zoo_parser(zoo):
    entry = get_zoo_entry("toy_probe")
    assert entry.pretrained == "zoo:toy_pretrain" and pretraining_source(entry) == "toy_pretrain"
    assert pretraining_source(get_zoo_entry("toy_pretrain")) is None


def test_probe_trains_the_pretraining_run_first_and_keeps_its_frozen_backbone(zoo):
    """The linear probe (only the head trains) ends with exactly the pretraining run's backbone weights;
    without the reference its backbone would be a random initialisation."""
    run = ensure_trained("toy_probe", profile="cpu", store=zoo, progress=False)
    pretrain = ensure_trained("toy_pretrain", profile="cpu", store=zoo, progress=False)  # trained above: reused
    source = load_file(str(pretrain.checkpoint()))
    probe = load_file(str(run.checkpoint()))
    head = {k for k in probe if k.startswith("backbone.fc.")}
    assert head and set(probe) == set(source)
    assert all((probe[k] == source[k]).all() for k in probe if k not in head and probe[k].is_floating_point())
    manifest = read_manifest(run.checkpoint())
    assert manifest["pretrained"]["path"] == str(pretrain.checkpoint())
    assert len(list(zoo.root.glob("toy_pretrain-cpu-*/epoch-*.safetensors"))) == 2  # trained once, not twice
    # listings (`xai-harness zoo`) find the probe's run from the entry with its reference
    probe_entry = get_zoo_entry("toy_probe")
    assert zoo.run_dir(probe_entry, get_recipe("linear_probe", "cpu"), "cpu") == run.checkpoint().parent


def test_materialise_leaves_plain_entries_alone_and_names_bad_references(zoo):
    plain = get_zoo_entry("toy_pretrain")
    assert materialise_pretrained(plain, profile="cpu", store=zoo) is plain
    with pytest.raises(ZooError, match="pretrained reference cycle: loop_a -> loop_b -> loop_a"):
        materialise_pretrained(get_zoo_entry("loop_a"), profile="cpu", store=zoo)
    with pytest.raises(ZooError, match="pretrained: zoo:no_such_model: unknown model 'no_such_model'"):
        materialise_pretrained(get_zoo_entry("orphan"), profile="cpu", store=zoo)


def test_the_pretraining_recipe_is_multilabel_on_all_layers():
    recipe = get_recipe("histo_pretrain", "cpu")
    assert recipe.loss == "bce" and recipe.trainable_stages is None and recipe.epochs == 5
    assert get_recipe("histo_pretrain", "gpu").epochs == 30
