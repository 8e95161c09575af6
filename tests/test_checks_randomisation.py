"""Randomisation units (block granularity) in forward order, deterministic re-initialisation."""

from __future__ import annotations

import copy

import torch

from harness.metrics.randomisation import randomisation_units, randomise_unit
from harness.models import create_model


def parameter_groups(model):
    return {u.name: u.params for u in randomisation_units(model, granularity="block")}


def test_groups_follow_forward_order_and_include_model_level_tensors():
    vit = create_model("test_vit", img_size=32)
    groups = list(parameter_groups(vit))
    assert groups[0] == "backbone"  # cls_token / pos_embed: model-level parameters come first
    assert groups[-1].startswith("backbone.head")
    cnn = list(parameter_groups(create_model("test_resnet", img_size=32)))
    assert cnn[0].startswith("backbone.conv1") and cnn[-1] == "backbone.fc"


def test_randomisation_is_deterministic_and_leaves_the_global_rng_alone():
    model = create_model("test_resnet", img_size=32)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    names = parameter_groups(model)["backbone.fc"]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    randomise_unit(a, names, seed=7)
    assert torch.equal(torch.rand(1), before)
    randomise_unit(b, names, seed=7)
    assert torch.equal(a.backbone.fc.weight, b.backbone.fc.weight)
    assert not torch.equal(a.backbone.fc.weight, model.backbone.fc.weight)
