"""The gpu profile's training path, run on the CPU at a small size, so the CUDA default is tested code.

``train_locked`` takes a ``device``: with the real ``gpu`` profile (bf16 autocast, channels_last,
the uint8 split held on the training device, batched augmentation there) and ``device=cpu`` it runs
everything but the CUDA-only extras (cuDNN autotuning, fused optimizers, sampled finiteness checks,
torch.compile, which is off on a CPU). Spies wrap the trainer's own functions; production code is
unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from harness.models import trainer
from harness.models.checkpoints import CheckpointStore
from harness.models.recipes import PROFILES, get_recipe
from harness.models.testing import toy_entry, toy_imageset

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, N = 32, 32
CPU = torch.device("cpu")


class Spy:
    """What the trainer did, seen from hooks on the model and wrappers around its functions."""

    def __init__(self) -> None:
        self.train_forwards: list[dict] = []  # per training forward: autocast, dtypes, memory formats
        self.splits: list[tuple[torch.dtype, torch.device]] = []  # the held split at each step
        self.prepared: list[tuple[torch.dtype, torch.device]] = []  # what _prepare received
        self.augmented: list[tuple[torch.device, torch.device, torch.dtype]] = []  # images, generator, dtype
        self.compiled = 0

    def watch(self, model: torch.nn.Module) -> None:
        # A single-channel tensor is channels_last and contiguous at once, so the image input and the
        # stem's weight cannot tell the formats apart: watch a convolution with several input channels.
        conv = next(m for m in model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1 and m.in_channels > 1)

        def before(module, args):
            if module.training:
                (x,) = args
                self.train_forwards.append({
                    "autocast": torch.is_autocast_enabled("cpu"), "autocast_dtype": torch.get_autocast_dtype("cpu"),
                    "input_dtype": x.dtype,
                    "weight_channels_last": _strictly_channels_last(conv.weight),
                })

        def after(module, args, out):
            if model.training:
                self.train_forwards[-1]["conv_out_dtype"] = out.dtype
                self.train_forwards[-1]["activation_channels_last"] = _strictly_channels_last(args[0])

        model.register_forward_pre_hook(before)
        conv.register_forward_hook(after)


def _strictly_channels_last(t: torch.Tensor) -> bool:
    """NHWC in memory, and not also NCHW-contiguous (true of tensors with one channel or 1x1 maps)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@pytest.fixture
def spy(monkeypatch) -> Spy:
    spy = Spy()
    create, prepare, step, augment = trainer.create_model, trainer._Fitter._prepare, trainer._Fitter.train_step, \
        trainer.augment_batch

    def create_and_watch(*args, **kwargs):
        model = create(*args, **kwargs)
        spy.watch(model)
        return model

    def prepare_and_record(self, images_u8, **kwargs):
        spy.prepared.append((images_u8.dtype, images_u8.device))
        return prepare(self, images_u8, **kwargs)

    def step_and_record(self, index):
        spy.splits.append((self.train.images.dtype, self.train.images.device))
        return step(self, index)

    def augment_and_record(images, config, generator):
        spy.augmented.append((images.device, generator.device, images.dtype))
        return augment(images, config, generator)

    def no_compile(*args, **kwargs):
        spy.compiled += 1
        raise AssertionError("torch.compile must be off on the CPU")

    monkeypatch.setattr(trainer, "create_model", create_and_watch)
    monkeypatch.setattr(trainer._Fitter, "_prepare", prepare_and_record)
    monkeypatch.setattr(trainer._Fitter, "train_step", step_and_record)
    monkeypatch.setattr(trainer, "augment_batch", augment_and_record)
    monkeypatch.setattr(torch, "compile", no_compile)
    return spy


def train_gpu_profile_on_cpu(tmp_path):
    """The real ``gpu`` profile and the toy recipe's gpu values, under the run lock as ``train`` takes it."""
    entry = toy_entry("gpu-path", size=SIZE, n=N)
    recipe, store = get_recipe(entry.recipe, "gpu"), CheckpointStore(tmp_path)
    with store.lock(store.run_dir(entry, recipe, "gpu")):
        return trainer.train_locked(entry, recipe=recipe, profile="gpu", store=store, progress=False, device=CPU)


def test_gpu_profile_trains_on_cpu_with_its_numerics(tmp_path, spy):
    assert PROFILES["gpu"].precision == "bf16" and PROFILES["gpu"].channels_last  # what is under test
    run = train_gpu_profile_on_cpu(tmp_path)
    steps = 2 * (N // 16)  # the toy recipe: 2 epochs of batch 16
    assert len(spy.train_forwards) == len(spy.splits) == steps and spy.compiled == 0
    for seen in spy.train_forwards:
        assert seen["autocast"] and seen["autocast_dtype"] == torch.bfloat16
        assert seen["conv_out_dtype"] == torch.bfloat16  # the convolution really ran in bf16
        assert seen["input_dtype"] == torch.float32  # uint8 converted (and augmented) inside the step
        assert seen["weight_channels_last"] and seen["activation_channels_last"]
    assert set(spy.splits) == {(torch.uint8, CPU)}  # the split stays uint8 on the device until the step
    assert (torch.uint8, CPU) in spy.prepared
    assert len(spy.augmented) == steps and set(spy.augmented) == {(CPU, CPU, torch.float32)}
    assert run.profile == "gpu" and run.completed and all(
        math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in run.history)


def test_gpu_profile_checkpoint_loads(tmp_path, spy):
    run = train_gpu_profile_on_cpu(tmp_path)
    weights = load_file(str(run.checkpoint()))
    floats = [t for t in weights.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)  # bf16 is autocast, not storage
    model = run.load()
    assert model.arch == "test_resnet" and model.img_size == SIZE
    images = toy_imageset("val", size=SIZE, n=8).images.float() / 255
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (8, 2) and torch.isfinite(logits).all()
    state = model.state_dict()
    assert all(torch.equal(state[k], weights[k]) for k in weights)


def test_a_forward_outside_autocast_would_be_caught(spy):
    """The spy tells the paths apart: outside autocast and without channels_last it sees fp32 and NCHW."""
    model = trainer.create_model("test_resnet", img_size=SIZE).train()
    model(torch.rand(2, 1, SIZE, SIZE))
    seen = spy.train_forwards[-1]
    assert not seen["autocast"] and seen["conv_out_dtype"] == torch.float32
    assert not seen["weight_channels_last"] and not seen["activation_channels_last"]
