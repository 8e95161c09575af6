"""Every recipe trains (cpu variant on toy data; gpu variant's values on the CPU), plus its pieces:
losses, partial freezing, step schedule, multi-label evaluation and the weight soup."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from harness.models.architectures import create_model
from harness.models.checkpoints import CheckpointStore, load_checkpoint
from harness.models.freezing import set_trainable
from harness.models.losses import classification_loss, sigmoid_focal_loss, softmax_focal_loss
from harness.models.recipes import Recipe, get_recipe, list_recipes, lr_factor
from harness.models.soup import Candidate, average_states, greedy_soup
from harness.models.testing import TOY_FINDINGS, TOY_MULTILABEL, toy_entry, toy_multilabel_imageset
from harness.models.trainer import evaluate, train_locked

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = ["pneumothorax_cnn", "pneumothorax_vit", "cxr14_baseline", "focal_finetune", "linear_probe", "chextransfer",
           "undertrained"]


def quick(recipe: Recipe, **changes) -> Recipe:
    """``recipe`` shortened for toy data: 2 epochs of 4 steps, schedules and evaluations scaled down."""
    values = dict(profile="cpu", epochs=2, batch_size=16, warmup_epochs=min(recipe.warmup_epochs, 1))
    if recipe.schedule == "step":
        values["step_epochs"] = 1
    if recipe.eval_every_steps:
        values["eval_every_steps"] = 2
    return dataclasses.replace(recipe, **{**values, **changes})


def fit(tmp_path, name: str, recipe: Recipe, *, multilabel: bool):
    arch = "test_vit" if "vit" in name else "test_resnet"
    entry = toy_entry(f"{name}-{recipe.profile}", architecture=arch, recipe=name, size=32, n=64,
                      dataset=TOY_MULTILABEL if multilabel else "toy-blobs")
    return train_locked(entry, recipe=quick(recipe), profile="cpu", store=CheckpointStore(tmp_path), progress=False)


def test_all_protocols_are_registered():
    assert set(RECIPES) <= set(list_recipes())


@pytest.mark.parametrize("name", RECIPES)
def test_cpu_variant_trains_on_toy_data(tmp_path, name):
    recipe = get_recipe(name, "cpu")
    multilabel = recipe.loss == "bce"
    run = fit(tmp_path, name, recipe, multilabel=multilabel)
    first, last = run.history[0], run.history[-1]
    assert math.isfinite(last["train_loss"])
    assert last["train_loss"] < first["train_loss"] or last["val_auroc"] > 0.6, run.history
    model, manifest = load_checkpoint(run.checkpoint())
    assert model.multilabel == multilabel and model.num_classes == (2 if not multilabel else len(TOY_FINDINGS))
    if multilabel:
        assert manifest["finding_names"] == list(TOY_FINDINGS) and len(last["val_auroc_per_class"]) == 2


@pytest.mark.parametrize("name", RECIPES)
def test_gpu_variant_values_run_on_cpu(tmp_path, name):
    """The published protocol's options (CLAHE, focal, freezing, step LR, soup) work end to end."""
    recipe = get_recipe(name, "gpu")
    run = fit(tmp_path, name, recipe, multilabel=recipe.loss == "bce")
    assert all(math.isfinite(h["train_loss"]) for h in run.history)
    model, manifest = load_checkpoint(run.checkpoint())
    assert model.preprocess.kind == recipe.preprocess == manifest.get("preprocess", "none")


def test_protocol_values():
    cnn, vit = get_recipe("pneumothorax_cnn", "gpu"), get_recipe("pneumothorax_vit", "gpu")
    assert (cnn.optimizer, cnn.lr, cnn.epochs, cnn.preprocess) == ("adam", 1e-4, 50, "clahe+zscore")
    assert (vit.optimizer, vit.lr, vit.epochs, vit.preprocess) == ("sgd", 1e-4, 300, "clahe+zscore")
    base = get_recipe("cxr14_baseline", "gpu")
    assert (base.optimizer, base.lr, base.batch_size, base.epochs, base.loss, base.augment.enabled,
            base.schedule) == ("adam", 1e-3, 32, 25, "bce", False, "constant")
    focal = get_recipe("focal_finetune", "gpu")
    assert (focal.loss, focal.schedule, focal.step_epochs, focal.step_gamma, focal.batch_size, focal.eval_batch_size,
            focal.epochs, focal.trainable_stages) == ("focal", "step", 5, 0.1, 64, 32, 20, 2)
    probe = get_recipe("linear_probe", "gpu")
    assert (probe.optimizer, probe.lr, probe.batch_size, probe.epochs, probe.trainable_stages) == \
        ("adam", 1e-3, 32, 5, 0)
    chex = get_recipe("chextransfer", "gpu")
    assert (chex.optimizer, chex.lr, chex.batch_size, chex.epochs, chex.ensemble_top_k) == ("adam", 1e-4, 16, 3, 10)
    assert chex.eval_every_steps * chex.batch_size == 8192
    for name in RECIPES:
        cpu = get_recipe(name, "cpu")
        assert cpu.epochs <= get_recipe(name, "gpu").epochs and cpu.epochs <= 16


def test_cpu_pneumothorax_recipe_is_unchanged():
    """The pneumothorax suite is calibrated on models trained with exactly these values (recalibrate with
    `xai-harness calibrate` when they change)."""
    cnn = get_recipe("pneumothorax_cnn", "cpu")
    assert cnn.to_dict() == {
        "name": "pneumothorax_cnn", "profile": "cpu", "optimizer": "adam", "lr": 1e-3, "epochs": 5, "batch_size": 32,
        "weight_decay": 0.0, "momentum": 0.0, "schedule": "cosine", "warmup_epochs": 0, "loss": "cross_entropy",
        "label_smoothing": 0.0, "augment": {"hflip": True, "rotation_deg": 10.0, "shift": 0.0, "brightness": 0.1,
                                            "contrast": 0.1, "noise_std": 0.02}, "eval_batch_size": 256}


def test_step_schedule():
    step = Recipe("x", "cpu", "adam", lr=1.0, epochs=20, batch_size=8, schedule="step", step_epochs=5)
    assert [lr_factor(step, s, 10) for s in (0, 49, 50, 99, 100, 199)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.001])
    with pytest.raises(ValueError, match="step_epochs"):
        Recipe("x", "cpu", "adam", lr=1.0, epochs=2, batch_size=8, schedule="step")
    with pytest.raises(ValueError, match="eval_every_steps"):
        Recipe("x", "cpu", "adam", lr=1.0, epochs=2, batch_size=8, ensemble_top_k=3)


def test_losses_match_references():
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 3), (torch.rand(16, 3) > 0.5).float()
    expected = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha=-1, gamma=2.0, reduction="mean")
    assert torch.allclose(sigmoid_focal_loss(logits, targets, gamma=2.0), expected)
    expected = torchvision.ops.sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=1.5, reduction="mean")
    assert torch.allclose(sigmoid_focal_loss(logits, targets, gamma=1.5, alpha=0.25), expected)
    binary_logits, labels = torch.randn(16, 2), torch.randint(0, 2, (16,))
    ce = torch.nn.functional.cross_entropy(binary_logits, labels)
    assert torch.allclose(softmax_focal_loss(binary_logits, labels, gamma=0.0), ce)
    assert softmax_focal_loss(binary_logits, labels, gamma=2.0) < ce
    assert torch.equal(classification_loss(binary_logits, labels, loss="cross_entropy"), ce)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(classification_loss(logits, targets, loss="bce"), bce)
    assert torch.allclose(classification_loss(logits, targets, loss="cross_entropy"), bce)
    assert torch.allclose(classification_loss(logits, targets, loss="focal", focal_gamma=2.0),
                          sigmoid_focal_loss(logits, targets, gamma=2.0))
    unknown = targets.clone()
    unknown[:4, 0] = float("nan")  # unknown labels contribute nothing
    elementwise = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    known = ~unknown.isnan()
    assert torch.allclose(classification_loss(logits, unknown, loss="bce"), elementwise[known].mean())
    with pytest.raises(ValueError, match="multi-label"):
        classification_loss(binary_logits, labels, loss="bce")


def test_linear_probe_trains_only_the_head(tmp_path):
    entry = toy_entry("probe", size=32, n=64, recipe="linear_probe")
    recipe = quick(get_recipe("linear_probe", "cpu"), epochs=1)
    torch.manual_seed(entry.seed)
    initial = create_model("test_resnet", img_size=32).state_dict()
    run = train_locked(entry, recipe=recipe, profile="cpu", store=CheckpointStore(tmp_path), progress=False)
    trained = load_file(str(run.checkpoint()))
    changed = {k for k in trained if not torch.equal(trained[k], initial[k])}
    assert changed == {"backbone.fc.weight", "backbone.fc.bias"}  # BatchNorm statistics too stay frozen


@pytest.mark.parametrize("arch,stages,first_trainable", [
    ("resnet18", 2, "backbone.layer3.0.conv1.weight"),
    ("densenet121", 1, "backbone.features.transition3.norm.weight"),
    ("efficientnet_b0", 2, "backbone.blocks.3.0.conv_pw.weight"),
    ("tv_resnet18", 1, "backbone.layer4.0.conv1.weight"),
    ("resnet18_minus2", 1, "backbone.layer2.0.conv1.weight"),
    ("test_vit", 2, "backbone.blocks.4.norm1.weight"),
])
def test_partial_unfreezing_by_feature_stage(arch, stages, first_trainable):
    with torch.device("meta"):
        model = create_model(arch, img_size=64)
    set_trainable(model, stages)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names[0] == first_trainable
    params = list(model.parameters())
    assert params[-1].requires_grad and not params[0].requires_grad  # head trains, stem frozen
    assert names == [n for n, _ in model.named_parameters()][-len(names):]  # a suffix: everything after
    assert set_trainable(model, None) == list(model.parameters())


def test_multilabel_evaluation_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(0)
    data = toy_multilabel_imageset("val", size=16, n=24)
    model = create_model("test_resnet", img_size=16, num_classes=2, multilabel=True)
    result = evaluate(model, data.images, data.labels, batch_size=7)
    with torch.no_grad():
        probs = torch.sigmoid(model(data.as_float()))
    per_class = [roc_auc_score(data.labels[:, k].numpy(), probs[:, k].numpy()) for k in range(2)]
    assert result["per_class_auroc"] == pytest.approx(per_class)
    assert result["auroc"] == pytest.approx(sum(per_class) / 2)
    labels = data.labels.clone()
    labels[:5, 1] = float("nan")  # unknown labels are left out of that finding's AUROC
    partial = evaluate(model, data.images, labels)
    assert partial["per_class_auroc"][1] == pytest.approx(roc_auc_score(labels[5:, 1].numpy(), probs[5:, 1].numpy()))


def test_greedy_soup_keeps_only_helpful_members():
    model = torch.nn.Linear(2, 1, bias=False)
    good = Candidate(1, 0.9, {"weight": torch.tensor([[1.0, 0.0]])})
    also_good = Candidate(2, 0.8, {"weight": torch.tensor([[1.0, 0.2]])})
    bad = Candidate(3, 0.85, {"weight": torch.tensor([[-5.0, 0.0]])})

    def score(m):  # better the closer weight[0] is to 1
        return 1.0 - abs(float(m.weight[0, 0].detach()) - 1.0) / 10

    result = greedy_soup(model, [bad, also_good, good], score=score, recalibrate=lambda m: None)
    assert result.members == (1, 2) and result.tried == 3
    assert torch.allclose(model.weight, torch.tensor([[1.0, 0.1]]))
    assert torch.equal(average_states([good.state, also_good.state])["weight"], torch.tensor([[1.0, 0.1]]))
