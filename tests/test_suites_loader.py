"""YAML suites: the shipped suite loads; every malformed suite names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suites import SuiteError, load_suite

SHIPPED = Path(__file__).resolve().parents[1] / "suites"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_shipped_suite_covers_every_check_category_but_complexity():
    from harness.checks import get_check

    suite = load_suite(SHIPPED / "pneumothorax.yaml")
    categories = {get_check(c.check).category for c in suite.checks}
    assert categories == {"performance", "localisation", "randomisation", "stability",
                          "checkpoint_consistency", "shortcut", "faithfulness"}


GOOD = """\
suite: t
checks:
  - id: a
    check: auroc
    require: ci_low >= 0.8
  - id: b
    check: diffgradcam
    explainers: [gradcam]
    require: ci_low >= 0.1
    overrides:
      vit_small_patch16_224: {require: ci_low >= 0.02}
      resnet18_shortcut: {skip: true}
      profile:cpu: {severity: warn}
"""


def test_overrides_by_architecture_then_model_name(tmp_path):
    suite = load_suite(_write(tmp_path, GOOD))
    b = suite.checks[1]
    assert str(b.for_model("resnet18", "resnet18")[0]) == "ci_low >= 0.1"
    assert str(b.for_model("vit_small", "vit_small_patch16_224")[0]) == "ci_low >= 0.02"
    assert b.for_model("resnet18_shortcut", "resnet18")[2] is True
    assert b.for_model("resnet18", "resnet18", "cpu")[0].severity == "warn"
    assert b.for_model("resnet18", "resnet18", "gpu")[0].severity == "fail"
    assert suite.checks[0].explainers == ("-",)  # performance checks need no explainer


@pytest.mark.parametrize(
    "line_no, replace, expect",
    [
        (4, ("check: auroc", "check: aurocc"), "unknown check 'aurocc'; valid checks:"),
        (5, ("require: ci_low >= 0.8", "require: ci_low > 0.8"), "cannot read condition"),
        (8, ("explainers: [gradcam]", "explainers: [gradcamm]"), "unknown explainer 'gradcamm'; valid explainers:"),
        (4, ("  - id: a\n", "  - id: a\n    colour: red\n"), "unknown check key 'colour'; valid keys:"),
        (5, ("check: auroc", "check: auroc\n    params: {nboot: 3}"), "has no parameter 'nboot'; valid: split"),
    ],
)
def test_malformed_suite_names_file_line_and_choices(tmp_path, line_no, replace, expect):
    path = _write(tmp_path, GOOD.replace(*replace))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(err.value).startswith(f"{path}:{line_no}:")
    assert expect in str(err.value)


def test_invalid_yaml_reports_its_line(tmp_path):
    path = _write(tmp_path, "suite: t\nchecks:\n  - id: a\n    check: [auroc\n")
    with pytest.raises(SuiteError, match=r"suite\.yaml:\d+: invalid YAML"):
        load_suite(path)


def test_duplicate_ids_are_rejected(tmp_path):
    path = _write(tmp_path, GOOD.replace("id: b", "id: a"))
    with pytest.raises(SuiteError, match="duplicate check id 'a' \\(first at line 3\\)"):
        load_suite(path)


# --- what a typo could silently switch off is an error naming the file, the line and the choices

STABLE = """\
suite: t
datasets: [synth-cxr]
defaults: {explainers: [gradcam], n_boot: 100, seed: 0}
checks:
  - id: a
    check: auroc
    require: ci_low >= 0.8
  - id: s
    check: perturbation_stability
    explainers: [gradient]
    require: ci_low >= 0.5
    params:
      perturbation: gaussian_noise(sigma=0.02)
      n_images: 32
    overrides:
      resnet18_shortcut: {severity: warn}
"""


@pytest.mark.parametrize(
    "line_no, replace, expect",
    [
        (2, ("[synth-cxr]", "[synth-cxrr]"), "unknown dataset 'synth-cxrr'; valid datasets: burned-token"),
        (2, ("[synth-cxr]", "[]"), "'datasets' must be a non-empty list of dataset names"),
        (3, ("explainers: [gradcam], ", "explainers: [], "), "'explainers' must be a non-empty list"),
        (10, ("explainers: [gradient]", "explainers: []"), "'explainers' must be a non-empty list"),
        (10, ("explainers: [gradient]", "explainers: [gradient, gradient]"), "explainer listed twice"),
        (7, ("    check: auroc\n", "    check: auroc\n    explainers: [gradcam]\n"),
         "check 'auroc' uses no explainer; drop its 'explainers' key"),
        (16, ("resnet18_shortcut:", "resnet18_shortcutt:"),
         "override 'resnet18_shortcutt' names no profile, family, zoo model or architecture, so it would never apply; "
         "valid: profile:cpu, profile:gpu, family:cnn, family:vit, a zoo model (resnet18"),
        (16, ("resnet18_shortcut:", "profile:cpuu:"), "unknown profile in override 'profile:cpuu'; valid: profile:cpu, "
         "profile:gpu; did you mean 'profile:cpu'?"),
        (16, ("{severity: warn}", "{skip: yes please}"), "override 'resnet18_shortcut': 'skip' must be true or false"),
        (16, ("{severity: warn}", "{severity: warning}"), "severity must be 'fail' or 'warn', not 'warning'"),
        (16, ("{severity: warn}", "{params: {n_images: lots}}"),
         "parameter 'n_images' of check 'perturbation_stability' must be an integer, got 'lots'"),
        (3, ("n_boot: 100", "n_boot: many"), "defaults key 'n_boot' must be an integer, got 'many'"),
        (3, ("n_boot: 100", "n_boot: 0"), "defaults key 'n_boot' must be at least 1, got 0"),
        (3, ("seed: 0", "seed: -1"), "defaults key 'seed' must be at least 0, got -1"),
        (3, ("seed: 0}", "seed: 0, max_images: 0}"), "defaults key 'max_images' must be at least 1, got 0"),
        (14, ("n_images: 32", "n_images: 3.5"), "parameter 'n_images' of check 'perturbation_stability' must be an "
         "integer, got 3.5"),
        (13, ("gaussian_noise(sigma=0.02)", "gausian_noise(sigma=0.02)"),
         "parameter 'perturbation': unknown perturbation 'gausian_noise'"),
        (13, ("gaussian_noise(sigma=0.02)", "gaussian_noise(sigmaa=0.02)"), "bad arguments in perturbation"),
        (5, ("id: a", "id: [a]"), "'id' must be a name"),
        (1, ("suite: t", "suite: {}"), "'suite' must be a name"),
        (12, ("params:\n", "params: 3\n    unused:\n"), "'params' must be a mapping, got 3"),
        (14, ("n_images: 32", "n_image: 32"), "has no parameter 'n_image'; valid: perturbation, similarity, split, "
         "n_images, min_kept, n_boot, seed; did you mean 'n_images'?"),
    ],
)
def test_silent_mistakes_are_errors(tmp_path, line_no, replace, expect):
    assert load_suite(_write(tmp_path, STABLE)).checks[1].params["n_images"] == 32  # the base suite is valid
    text = STABLE.replace(*replace)
    if "unused" in text:
        text = text.replace("    unused:\n      perturbation: gaussian_noise(sigma=0.02)\n      n_images: 32\n", "")
    path = _write(tmp_path, text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert expect in str(err.value)
    assert str(err.value).startswith(f"{path}:{line_no}:"), str(err.value)


def test_equivariance_needs_a_geometric_transform(tmp_path):
    path = _write(tmp_path, "suite: t\nchecks:\n  - id: e\n    check: equivariance\n    require: ci_low >= 0.5\n"
                            "    params: {transform: gaussian_noise(sigma=0.02)}\n")
    with pytest.raises(SuiteError, match=r"suite\.yaml:6: parameter 'transform' needs a geometric transform"):
        load_suite(path)


def test_valid_override_targets(tmp_path):
    """Profiles, architectures, zoo models and an external checkpoint by its file stem all apply."""
    text = STABLE.replace("      resnet18_shortcut: {severity: warn}\n",
                          "      resnet18_shortcut: {severity: warn}\n      profile:gpu: {skip: true}\n"
                          "      resnet18: {params: {n_images: 16}}\n      vit_small_patch16_224: {skip: false}\n"
                          "      checkpoint:epoch-005: {require: ci_low >= 0.4}\n")
    check = load_suite(_write(tmp_path, text)).checks[1]
    assert set(check.overrides) == {"resnet18_shortcut", "profile:gpu", "resnet18", "vit_small_patch16_224",
                                    "checkpoint:epoch-005"}
    assert str(check.for_model("checkpoint:epoch-005", "resnet18")[0]) == "ci_low >= 0.4"
    assert check.for_model("resnet18", "resnet18")[1]["n_images"] == 16


def test_family_overrides_apply_between_profile_and_architecture(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("suite: s\nchecks:\n  - id: a\n    check: diffgradcam\n    require: ci_low >= 0.1\n"
                    "    overrides:\n      family:vit: {severity: warn}\n      vit_small_patch16_224: {require: ci_low >= 0.2}\n")
    check = load_suite(path).checks[0]
    assert check.for_model("m", "resnet18", "cpu", "cnn")[0].severity == "fail"
    assert check.for_model("m", "vit_tiny_convstem", "cpu", "vit")[0].severity == "warn"
    vit_small = check.for_model("m", "vit_small_patch16_224", "cpu", "vit")[0]
    assert str(vit_small) == "ci_low >= 0.2" and vit_small.severity == "warn"  # the family's severity stays
    path.write_text(path.read_text().replace("family:vit", "family:vitt"))
    with pytest.raises(SuiteError, match="unknown family in override 'family:vitt'.*did you mean 'family:vit'"):
        load_suite(path)


def test_override_params_reach_the_check_as_written(tmp_path):
    """An override's ``params`` merge into the check's, without the loader's line bookkeeping."""
    path = tmp_path / "s.yaml"
    path.write_text("suite: s\nchecks:\n  - id: p\n    check: pointing_game\n    explainers: [gradcam]\n"
                    "    require: ci_low >= 0.1\n    params: {tolerance: 4}\n    overrides:\n"
                    "      profile:gpu: {params: {tolerance: 15}}\n")
    check = load_suite(path).checks[0]
    assert check.for_model("m", "resnet18", "cpu")[1] == {"tolerance": 4}
    assert check.for_model("m", "resnet18", "gpu")[1] == {"tolerance": 15}
