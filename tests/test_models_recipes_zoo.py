"""Recipes (per-profile values) and the zoo file (entries, validation, file:line errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.models.recipes import PROFILES, Recipe, get_profile, get_recipe, list_recipes
from harness.models.zoo import ZooError, get_zoo_entry, list_zoo, load_zoo, zoo_path
from harness.registry import UnknownNameError

REQUIRED_MODELS = ["resnet18", "resnet50", "vgg16", "densenet121", "efficientnet_b0", "vit_small", "vit_base",
                   "resnet18_shortcut", "resnet34", "resnet101", "vgg19", "vit_large", "resnet18_minus2",
                   "resnet50_cxr14", "densenet121_chextransfer"]


def test_seed000_values():
    cnn = get_recipe("pneumothorax_cnn", "gpu")
    assert (cnn.optimizer, cnn.lr, cnn.epochs, cnn.loss) == ("adam", 1e-4, 50, "cross_entropy")
    aug = cnn.augment
    assert aug.hflip and 0 < aug.rotation_deg <= 10 and aug.noise_std > 0 and aug.brightness > 0 and aug.contrast > 0
    vit = get_recipe("pneumothorax_vit", "gpu")
    assert (vit.optimizer, vit.lr, vit.epochs) == ("sgd", 1e-4, 300)


def test_cpu_variants_are_quick():
    cnn = get_recipe("pneumothorax_cnn", "cpu")
    assert cnn.optimizer == "adam" and cnn.lr == pytest.approx(1e-3) and cnn.epochs <= 6
    vit = get_recipe("pneumothorax_vit", "cpu")
    assert vit.optimizer == "adamw" and vit.epochs <= 20 and vit.schedule == "cosine"
    assert PROFILES["cpu"].img_size == 64 and PROFILES["gpu"].img_size == 224
    assert PROFILES["gpu"].precision == "bf16" and PROFILES["gpu"].channels_last


def test_recipe_errors():
    assert {"pneumothorax_cnn", "pneumothorax_vit"} <= set(list_recipes())
    with pytest.raises(UnknownNameError, match="pneumothorax_cnn"):
        get_recipe("nope", "cpu")
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("tpu")
    with pytest.raises(ValueError, match="unknown optimizer"):
        Recipe("x", "cpu", "lion", lr=1e-3, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="epochs"):
        Recipe("x", "cpu", "adam", lr=1e-3, epochs=0, batch_size=8)


def test_zoo_has_required_entries():
    entries = {e.name: e for e in list_zoo()}
    assert set(REQUIRED_MODELS) <= set(entries)
    for entry in entries.values():
        assert entry.dataset in ("synth-cxr", "synth-cxr14", "synth-histo") and isinstance(entry.seed, int)
        # no weights file ships with the repository: only another zoo entry's run (trained on first use)
        assert entry.pretrained is None or entry.pretrained.removeprefix("zoo:") in entries
        path, line = entry.source.rsplit(":", 1)
        assert path == str(zoo_path()) and int(line) > 0
    assert entries["vit_small"].architecture == "vit_small_patch16_224"
    assert entries["vit_base"].recipe == "pneumothorax_vit"
    assert (entries["resnet50_cxr14"].recipe, entries["resnet50_cxr14"].seed) == ("cxr14_baseline", 123)
    cpu = [e.name for e in list_zoo(profile="cpu")]
    assert "vit_large" not in cpu and "resnet18" in cpu and "vit_large" in [e.name for e in list_zoo(profile="gpu")]


def test_shortcut_entry_differs_only_in_dataset_options():
    plain, shortcut = get_zoo_entry("resnet18"), get_zoo_entry("resnet18_shortcut")
    assert (plain.architecture, plain.recipe, plain.seed) == (shortcut.architecture, shortcut.recipe, shortcut.seed)
    assert shortcut.dataset_options["shortcuts"] == {
        "chest_drain": {"p_pos": 0.95, "p_neg": 0.05},
        "marker": {"p_pos": 0.3, "p_neg": 0.3},
        "border": {"p_pos": 0.3, "p_neg": 0.3},
    }


def test_unknown_model_lists_known_names():
    with pytest.raises(ZooError) as info:
        get_zoo_entry("resnet9000")
    assert "resnet9000" in str(info.value) and "resnet18_shortcut" in str(info.value)


GOOD = """models:
  a:
    architecture: resnet18
    dataset: synth-cxr
    recipe: pneumothorax_cnn
    seed: 1
"""


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("models:\n  a: [1, 2\n", 3, "invalid YAML"),
        (GOOD + "    colour: red\n", 2, "unknown keys ['colour']"),
        (GOOD.replace("architecture: resnet18", "architecture: resnet9000"), 3, "unknown architecture 'resnet9000'"),
        (GOOD.replace("recipe: pneumothorax_cnn", "recipe: nope"), 5, "unknown recipe 'nope'"),
        (GOOD.replace("seed: 1", "seed: one"), 6, "seed must be an integer"),
        (GOOD.replace("    seed: 1\n", ""), 2, "missing keys ['seed']"),
        (GOOD + GOOD.replace("models:\n", ""), 7, "duplicate model name 'a'"),
        ("modelz: {}\n", 1, "missing top-level key 'models'"),
        (GOOD + "    compile: maybe\n", 7, "compile must be true or false"),
        (GOOD + "    pretrained: 3\n", 7, "pretrained must be a string"),
        (GOOD + "    profiles: [tpu]\n", 7, "profiles must be a non-empty list"),
    ],
)
def test_zoo_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    with pytest.raises(ZooError) as info:
        load_zoo(path)
    assert f"{path}:{line}" in str(info.value)
    assert message in str(info.value)


def test_listing_is_torch_free_and_get_checks_the_architecture(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "zoo.yaml"
    path.write_text(GOOD.replace("architecture: resnet18", "architecture: resnet9000"))
    probe = (f"import sys; from harness.models.zoo import list_zoo; e = list_zoo({str(path)!r}); "
             "print(e[0].architecture, 'torch' in sys.modules)")
    repo = str(Path(__file__).resolve().parents[1])  # importable without an install
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert out.split() == ["resnet9000", "False"]
    with pytest.raises(ZooError, match=rf"{path}:3: model 'a': unknown architecture 'resnet9000'"):
        get_zoo_entry("a", path)


def test_zoo_file_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "zoo.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(path))
    assert [e.name for e in list_zoo()] == ["a"]
    assert get_zoo_entry("a").source == f"{path}:2"
    assert get_zoo_entry("a").config() == {"name": "a", "architecture": "resnet18", "dataset": "synth-cxr",
                                           "dataset_options": {}, "recipe": "pneumothorax_cnn", "seed": 1}


def test_pretrained_and_compile_keys(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text(GOOD + "    pretrained: weights/r18.safetensors\n    compile: true\n")
    entry = load_zoo(path)["a"]
    assert entry.pretrained == str(tmp_path / "weights" / "r18.safetensors") and entry.compile is True
    assert entry.config()["pretrained"] == entry.pretrained
    assert "compile" not in entry.config()  # a speed option, not part of the configuration
    assert "pretrained" not in load_zoo(_write(tmp_path, GOOD))["a"].config()  # old hashes unchanged


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "plain.yaml"
    path.write_text(text)
    return path


def test_purpose_key_marks_a_pretraining_backbone_and_a_typo_names_its_line(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text(GOOD + "    purpose: pretraining\n")
    entry = load_zoo(path)["a"]
    assert entry.purpose == "pretraining" and "purpose" not in entry.config()  # the weights do not depend on it
    assert load_zoo(_write(tmp_path, GOOD))["a"].purpose == "judged"
    path.write_text(GOOD + "    purpose: backbone\n")
    with pytest.raises(ZooError, match=rf"{path}:\d+: model 'a': purpose must be one of judged, pretraining"):
        load_zoo(path)
