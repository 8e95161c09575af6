"""Model stage: architecture registry (timm, torchvision, truncated variants), recipes, trainer
(resumable, data-parallel), checkpoint store, model zoo, local pretrained weights, and provisioning
(``provision.py``: a name to a trained model and its twins, training on first use).

Names are resolved lazily (PEP 562), so ``import harness.models`` does not import torch; the first
use of e.g. ``harness.models.create_model`` does.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "architectures": ["ARCHITECTURES", "register_architecture", "ClassifierNet", "TokenGridReshape",
                      "create_model", "list_architectures", "get_architecture_meta", "parameter_count",
                      "times_smaller"],
    "truncation": ["list_truncated"],
    "recipes": ["RECIPES", "register_recipe", "Recipe", "Augmentation", "Profile", "PROFILES", "get_recipe",
                "get_profile", "list_recipes"],
    "zoo": ["ZooEntry", "ZooError", "get_zoo_entry", "list_zoo", "load_zoo"],
    "checkpoints": ["CheckpointStore", "CheckpointError", "TrainedRun", "load_checkpoint"],
    "provision": ["ModelProvider", "Provisioned", "Twins", "ensure_trained"],
    "trainer": ["train", "default_profile", "evaluate", "TrainingDivergedError"],
    "pretrained": ["load_pretrained", "PretrainedError"],
    "preprocess": ["clahe", "zscore"],
    "distributed": ["train_distributed"],
    "augment": ["augment_batch"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'harness.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.models.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = sorted(_WHERE)
