"""Bring your own model: `xai-harness import` verifies a state dict trained elsewhere and writes its manifest;
`--checkpoint` then checks it like a store checkpoint, and `--previous`/`--seed-twin`/`--shuffled-twin` give
it the twins the comparison checks need (without one, the check is listed as not checked)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from harness.cli import main
from harness.models.checkpoint_files import load_checkpoint
from harness.models.external import ExternalModelError, ExternalNet, ExternalSpec, import_weights
from harness.models.testing import install_toy

# pytester restores sys.modules after each test; torch._dynamo must not be imported twice (test_no_silent_green).
import torch._dynamo  # noqa: E402,F401

SIZE = 32

FACTORY = """\
import torch
from torch import nn


def build(num_classes, in_chans=1):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def fixed_size(num_classes):
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 32 * 32, num_classes))


def not_a_module():
    return {"weights": 1}


def broken():
    raise RuntimeError("no GPU here")
"""


def _save(module: nn.Module, path, prefix: str = "", extra: dict | None = None):
    state = {prefix + k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    save_file({**state, **(extra or {})}, str(path))
    return path


def _timm_net(in_chans: int = 3, num_classes: int = 2, seed: int = 0) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("test_resnet", pretrained=False, in_chans=in_chans, num_classes=num_classes).eval()


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "team_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "team_models"


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


# --- import and load: the manifest, the sha256, the same logits as the original network


def test_import_by_timm_name_replicates_grey_to_three_channels_with_imagenet_statistics(tmp_path):
    net = _timm_net()
    weights = _save(net, tmp_path / "team.safetensors", prefix="module.")  # a DataParallel state dict
    manifest_path = import_weights(weights, ExternalSpec(architecture="test_resnet", img_size=SIZE))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest["architecture"] == "test_resnet" and manifest["img_size"] == SIZE and manifest["num_classes"] == 2
    assert manifest["external"]["key_prefix"] == "module." and manifest["external"]["in_chans"] == 3
    model, loaded = load_checkpoint(weights)
    assert isinstance(model, ExternalNet) and loaded == manifest
    images = _images()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net((images.expand(-1, 3, -1, -1) - mean) / std)
        torch.testing.assert_close(model(images), expected)
    assert model.target_layer_name.startswith("backbone.")


def test_import_by_factory_one_channel_harness_normalisation(tmp_path, factory_module):
    import team_models

    net = team_models.build(2, in_chans=1).eval()
    weights = _save(net, tmp_path / "fac.safetensors")
    spec = ExternalSpec(factory=f"{factory_module}:build", img_size=SIZE, in_chans=1, mean=(0.5,), std=(0.25,))
    manifest = json.loads(import_weights(weights, spec).read_text())
    assert manifest["architecture"] == "team_models:build"
    assert manifest["target_layer"] == "backbone.2"  # the last convolution: no timm feature_info
    model, _ = load_checkpoint(weights)
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(model(images), net((images - 0.5) / 0.25))


def test_cli_import_writes_the_manifest_once(tmp_path, capsys):
    weights = _save(_timm_net(in_chans=1), tmp_path / "cli.safetensors")
    args = ["import", str(weights), "--architecture", "test_resnet", "--input-size", str(SIZE), "--in-chans", "1",
            "--mean", "0.5", "--std", "0.25"]
    assert main(args) == 0
    manifest = json.loads(weights.with_suffix(".json").read_text())
    assert manifest["external"]["mean"] == [0.5] and manifest["external"]["std"] == [0.25]
    assert main(args) == 1  # a second import does not silently replace the manifest
    assert "exists already" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_multilabel_import_records_the_findings(tmp_path):
    weights = _save(_timm_net(num_classes=2), tmp_path / "ml.safetensors")
    assert main(["import", str(weights), "--architecture", "test_resnet", "--input-size", str(SIZE),
                 "--findings", "disk,bar"]) == 0
    model, manifest = load_checkpoint(weights)
    assert manifest["multilabel"] is True and manifest["finding_names"] == ["disk", "bar"]
    assert model.multilabel and model.finding_names == ("disk", "bar")


# --- clear errors


@pytest.mark.parametrize("make, spec, expect", [
    (lambda: _timm_net(num_classes=3), {"architecture": "test_resnet"},
     r"does not fit test_resnet .*2 shape mismatches: fc\.weight \(3, 96\) in the file, \(2, 96\) in the model, "
     r"fc\.bias"),
    (lambda: _timm_net(), {"architecture": "resnet18"}, r"does not fit resnet18 .*missing keys: .*unexpected keys: "),
    (lambda: _timm_net(), {"architecture": "resnet_18_typo"},
     r"unknown architecture 'resnet_18_typo'; did you mean .*resnet18.*Any timm model name works.*densenet121"),
    (lambda: _timm_net(), {"factory": "no_such_team_module:build"},
     r"module 'no_such_team_module' cannot be imported .*PYTHONPATH"),
    (lambda: _timm_net(), {"factory": "team_models:bulid"}, r"has no attribute 'bulid'; its callables: .*build"),
    (lambda: _timm_net(), {"factory": "team_models:not_a_module"}, r"returned a dict, not a torch\.nn\.Module"),
    (lambda: _timm_net(), {"factory": "team_models:broken"}, r"raised RuntimeError: no GPU here"),
    (lambda: _timm_net(), {"factory": "team_models"}, r"write it as package\.module:function"),
])
def test_errors_name_the_problem(tmp_path, factory_module, make, spec, expect):
    weights = _save(make(), tmp_path / "w.safetensors")
    with pytest.raises(ExternalModelError, match=expect):
        import_weights(weights, ExternalSpec(img_size=SIZE, **spec))
    assert not weights.with_suffix(".json").exists()  # nothing written before the model is verified


def test_extra_keys_are_listed_and_strict(tmp_path):
    weights = _save(_timm_net(), tmp_path / "w.safetensors", extra={"ema.step": torch.zeros(1)})
    with pytest.raises(ExternalModelError, match=r"1 unexpected keys: ema\.step"):
        import_weights(weights, ExternalSpec(architecture="test_resnet", img_size=SIZE))


def test_wrong_input_size_says_which_size_was_tried(tmp_path, factory_module):
    import team_models

    weights = _save(team_models.fixed_size(2), tmp_path / "fixed.safetensors")
    spec = dict(factory=f"{factory_module}:fixed_size", in_chans=1, mean=(0.5,), std=(0.25,))
    with pytest.raises(ExternalModelError, match=r"forward pass at input size 48x48 \(1 channel\(s\)\) failed.*"
                                                 r"--input-size"):
        import_weights(weights, ExternalSpec(img_size=48, **spec))
    import_weights(weights, ExternalSpec(img_size=SIZE, **spec))  # the size it was built for works


def test_pickles_are_never_read(tmp_path):
    pickle = tmp_path / "model.safetensors"
    torch.save(_timm_net().state_dict(), pickle)
    with pytest.raises(ExternalModelError, match="not a readable safetensors file.*pickled"):
        import_weights(pickle, ExternalSpec(architecture="test_resnet", img_size=SIZE))
    with pytest.raises(ExternalModelError, match=r"must be a \.safetensors file"):
        import_weights(_save(_timm_net(), tmp_path / "model.pt"), ExternalSpec(architecture="test_resnet"))


@pytest.mark.parametrize("spec, expect", [
    ({}, "exactly one of --architecture"),
    ({"architecture": "test_resnet", "factory": "a:b"}, "exactly one of --architecture"),
    ({"architecture": "test_resnet", "in_chans": 2}, "in_chans must be 1 or 3"),
    ({"architecture": "test_resnet", "mean": (0.1, 0.2)}, "--mean has 2 values; give 1 or 3"),
    ({"architecture": "test_resnet", "num_classes": 3}, "--classes 3 without --findings"),
    ({"architecture": "test_resnet", "num_classes": 3, "finding_names": ("a", "b")}, "2 findings but 3 classes"),
])
def test_inconsistent_specs_are_refused(spec, expect):
    with pytest.raises(ExternalModelError, match=expect):
        ExternalSpec(**spec)


def test_twins_come_from_the_named_files_and_must_match(tmp_path):
    from harness.models.checkpoint_files import CheckpointError
    from harness.models.provision import ModelProvider

    subject = _save(_timm_net(), tmp_path / "subject.safetensors")
    import_weights(subject, ExternalSpec(architecture="test_resnet", img_size=SIZE))
    previous = _save(_timm_net(seed=1), tmp_path / "previous.safetensors")
    import_weights(previous, ExternalSpec(architecture="test_resnet", img_size=SIZE))
    provider = ModelProvider(profile="cpu", device="cpu", progress=False)
    good = provider.external(subject, twins={"previous": previous, "seed": None})
    twins = provider.twins(good)
    assert twins.previous_epoch() is not None and twins.other_seed(1) is None and twins.shuffled_labels(0) is None
    assert provider.twins(provider.external(subject)).previous_epoch() is None  # no --previous: none
    # A twin at another input size is not the same network: refused when it is first used.
    bigger = _save(_timm_net(), tmp_path / "bigger.safetensors")
    import_weights(bigger, ExternalSpec(architecture="test_resnet", img_size=48))
    with pytest.raises(CheckpointError, match=r"--shuffled-twin .*bigger\.safetensors does not match the checked "
                                              r"model: img_size 48 \(checked model: 32\)"):
        provider.twins(provider.external(subject, twins={"shuffled": bigger})).shuffled_labels(0)


# --- the gate: --checkpoint on an imported model, twins from options, "not checked" and --strict

SUITE = """\
suite: team
defaults: {explainers: [gradcam], n_boot: 50, seed: 0}
checks:
  - id: performance_auroc
    check: auroc
    require: ci_low >= 0.0
  - id: consistency_previous
    check: checkpoint_consistency
    require: ci_low >= -1.0
  - id: consistency_seed
    check: seed_consistency
    require: ci_low >= -1.0
  - id: reported_impossible
    check: auroc
    require: value >= 1.01
    severity: warn
"""


@pytest.fixture
def imported(pytester: pytest.Pytester, tmp_path, monkeypatch):
    """Two imported toy checkpoints (a subject and its 'previous epoch') and a suite that reads toy data."""
    install_toy()
    pytester.makeconftest("from harness.models.testing import install_toy\ninstall_toy()\n")
    monkeypatch.setenv("XAI_HARNESS_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "team.yaml").write_text(SUITE)
    paths = []
    for seed in (0, 1):
        weights = _save(_timm_net(seed=seed), tmp_path / f"team-{seed}.safetensors")
        import_weights(weights, ExternalSpec(architecture="test_resnet", img_size=SIZE), dataset="toy-blobs",
                       dataset_options={"n": 48})
        paths.append(str(weights))
    return pytester, paths


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--report-dir", str(pytester.path / "reports"),
                                         "suites", *args)


def test_checkpoint_run_of_an_imported_model_lists_what_was_not_checked(imported):
    pytester, (subject, _) = imported
    result = _run(pytester, "--checkpoint", subject)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=2, skipped=2)  # the warn item passes pytest: reported, not gating
    result.stdout.fnmatch_lines(["*xai-harness: 2 skipped (not checked*",
                                 "SKIPPED *consistency_previous*no previous-epoch checkpoint*--previous PATH*",
                                 "SKIPPED *consistency_seed*no other seed*--seed-twin PATH*"])
    summary = (pytester.path / "reports" / "latest" / "summary.md").read_text()
    not_checked = summary.index("## Skipped items (2): not checked")
    assert not_checked < summary.index("## Run") < summary.index("## Model")  # at the top, under the result
    assert "--previous PATH" in summary[not_checked:summary.index("## Run")]


def test_previous_makes_checkpoint_consistency_run_and_strict_fails_skips_and_warnings(imported):
    pytester, (subject, previous) = imported
    result = _run(pytester, "--checkpoint", subject, "--previous", previous, "--strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*skipped, and --strict counts a skip as a failure*--seed-twin PATH*",
                                 "*severity warn, and --strict counts a warning as a failure*"])
    records = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["records"]
    by_check = {r["check"]: r for r in records}
    assert {c: r["verdict"] for c, r in by_check.items()} == {
        "performance_auroc": "pass", "consistency_previous": "pass", "consistency_seed": "error",
        "reported_impossible": "error"}
    compared = by_check["consistency_previous"]  # it ran against the --previous file: another network
    assert compared["metric"].endswith("between_checkpoints") and compared["value"] < 0.999


def test_suite_for_other_datasets_skips_a_checkpoint_trained_elsewhere(imported):
    """A suite's ``datasets:`` applies to ``--checkpoint`` too: its dataset is known once loaded, and a checkpoint
    trained on none of them skips every item with the reason (an error under --strict), never passes them."""
    pytester, (subject, _) = imported
    suite = pytester.path / "suites" / "team.yaml"
    suite.write_text(SUITE.replace("suite: team", "suite: team\ndatasets: [toy-multilabel]"))
    result = _run(pytester, "--checkpoint", subject, "-rs")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["SKIPPED *suite 'team' applies to datasets toy-multilabel; checkpoint:* is trained "
                                 "on toy-blobs*"])
    summary = (pytester.path / "reports" / "latest" / "summary.md").read_text()
    assert "## Skipped items (4)" in summary and "applies to datasets toy-multilabel" in summary
    strict = _run(pytester, "--checkpoint", subject, "--strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.assert_outcomes(errors=4)
    strict.stdout.fnmatch_lines(["*--strict counts a skip as a failure: suite 'team' applies to datasets*"])
    suite.write_text(SUITE.replace("suite: team", "suite: team\ndatasets: [toy-blobs]"))
    applies = _run(pytester, "--checkpoint", subject)
    applies.assert_outcomes(passed=2, skipped=2)  # as without ``datasets:`` (the twins are not given)


def test_twin_options_are_checked_before_any_model_is_loaded(imported, tmp_path):
    pytester, (subject, _) = imported
    missing = _run(pytester, "--checkpoint", subject, "--seed-twin", str(tmp_path / "absent.safetensors"))
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--seed-twin: *absent.safetensors: no such checkpoint file*"])
    assert not (pytester.path / "reports").exists()


def test_external_spec_round_trips(tmp_path):
    spec = ExternalSpec(factory="a.b:c", img_size=64, in_chans=1, num_classes=2, mean=(0.5,), std=(0.25,),
                        target_layer="features.3")
    assert ExternalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_docs_name_every_import_option():
    from pathlib import Path

    from harness.cli import build_parser

    doc = (Path(__file__).resolve().parents[1] / "docs" / "external-models.md").read_text()
    importer = build_parser()._subparsers._group_actions[0].choices["import"]
    options = [o for action in importer._actions for o in action.option_strings if o.startswith("--") and o != "--help"]
    assert [o for o in options if o not in doc] == []
    assert all(o in doc for o in ("--previous", "--seed-twin", "--shuffled-twin", "--strict"))


# --- a zoo entry may name an imported checkpoint (and its twins)


def test_zoo_entry_naming_an_imported_checkpoint(tmp_path, monkeypatch):
    from harness.models.provision import ModelProvider, ensure_trained
    from harness.models.zoo import ZooError, get_zoo_entry

    subject, previous = (_save(_timm_net(seed=s), tmp_path / f"v{s}.safetensors") for s in (0, 1))
    for weights in (subject, previous):
        import_weights(weights, ExternalSpec(architecture="test_resnet", img_size=SIZE), dataset="synth-cxr",
                       dataset_options={"n_patients": 10})
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("models:\n  team_v1:\n    checkpoint: v0.safetensors\n    previous: v1.safetensors\n")
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(zoo))
    entry = get_zoo_entry("team_v1")
    assert entry.architecture == "test_resnet" and entry.dataset == "synth-cxr"
    assert entry.dataset_options == {"n_patients": 10} and entry.twins == {"previous": str(previous)}
    provider = ModelProvider(profile="cpu", device="cpu", progress=False)
    subject_model = provider.resolve("team_v1")
    assert subject_model.name == "team_v1" and isinstance(subject_model.model, ExternalNet)
    assert provider.twins(subject_model).previous_epoch() is not None
    with pytest.raises(ZooError, match="imported checkpoint .*never trained"):
        ensure_trained(entry, profile="cpu")
    assert main(["train", "--model", "team_v1"]) == 2
    assert main(["zoo", "--profile", "cpu", "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    zoo.write_text("models:\n  team_v2:\n    checkpoint: absent.safetensors\n    recipe: toy\n")
    with pytest.raises(ZooError, match=r"zoo\.yaml:2: model 'team_v2' names a checkpoint: unknown keys \['recipe'\]"):
        get_zoo_entry("team_v2")
    zoo.write_text("models:\n  team_v2:\n    checkpoint: absent.safetensors\n")
    with pytest.raises(ZooError, match=r"zoo\.yaml:3: model 'team_v2': .*absent\.safetensors: no such checkpoint "
                                       r"file; import it with `xai-harness import`"):
        get_zoo_entry("team_v2")
