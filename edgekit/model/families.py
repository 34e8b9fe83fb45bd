"""The torchvision classifiers edgekit knows, as data: how each is built, its heads, its blocks, its defaults.

A model is named by its torchvision builder name (`resnet18`, `efficientnet_b0`, ...): that is what users
call it, what `torchvision.models.get_model` takes and what edgekit records in checkpoints and manifests.
Everything that depends on the family is found here or read off the model's own structure, so a stage
never assumes GoogLeNet's layout:

- the classifier is the Linear whose output is the model's output (`fc`, `classifier.1`, `classifier.6` ...),
  found by running the model, so pruning and transfer learning never hard-code it;
- the auxiliary heads (GoogLeNet's aux1/aux2, Inception v3's AuxLogits) are listed with the block each one
  reads and its loss weight (0.3 in the GoogLeNet paper, 0.4 in torchvision's Inception v3 recipe);
- the blocks, in forward order, are the model's children, with the body containers (`features`,
  `trunk_output`) opened one level: `layer3`, `features.5`, `features.denseblock3`, `inception4a`;
- the default preprocessing is the one torchvision's first ImageNet weights for that model were trained
  with (Inception v3: resize 342, crop 299), read from torchvision's weight metadata (no download).

Families whose layers the rest of edgekit has not been checked on (vision transformers, ConvNeXt, MaxViT,
Swin, SqueezeNet, MNASNet, EfficientNetV2) are refused with the list edgekit knows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import torch
from torch import nn

from edgekit.core.errors import EdgekitError
from edgekit.core.layer_groups import BODY_CONTAINERS
from edgekit.data.preprocess import PreprocessSpec

# torchvision builder-name prefixes edgekit compiles, each with its structural kind (what its INT8 and
# pruning trouble looks like).
KINDS = {
    "googlenet": "inception concat",
    "inception_v3": "inception concat",
    "resnet": "residual",
    "resnext": "residual",
    "wide_resnet": "residual",
    "regnet_": "residual",
    "shufflenet_v2_": "channel shuffle",
    "mobilenet_v2": "depthwise",
    "mobilenet_v3_": "depthwise + squeeze-excitation",
    "efficientnet_b": "depthwise + squeeze-excitation",
    "densenet": "dense concat",
    "vgg": "plain",
    "alexnet": "plain",
}
DEFAULT_ARCH = "googlenet"


@dataclasses.dataclass(frozen=True)
class AuxHead:
    module: str  # the head's module name
    reads: str  # the block whose output it reads: frozen → the head cannot help and is switched off
    output: str  # the field of the model's train-mode output that carries its logits
    weight: float  # its share in the training loss
    min_crop: int = 0  # below this input size the head's layers have nothing to convolve


AUX_HEADS: dict[str, tuple[AuxHead, ...]] = {
    "googlenet": (
        AuxHead("aux1", "inception4a", "aux_logits1", 0.3),
        AuxHead("aux2", "inception4d", "aux_logits2", 0.3),
    ),
    "inception_v3": (AuxHead("AuxLogits", "Mixed_6e", "aux_logits", 0.4, min_crop=299),),
}
AUX_MODULES = tuple(head.module for heads in AUX_HEADS.values() for head in heads)  # every family's, by name
WITH_TRANSFORM_INPUT = ("googlenet", "inception_v3")  # torchvision's ImageNet re-normalisation inside the model


@functools.cache
def known_archs() -> tuple[str, ...]:
    import torchvision.models

    return tuple(
        name for name in sorted(torchvision.models.list_models(module=torchvision.models)) if kind_of(name) is not None
    )


def kind_of(arch: str) -> str | None:
    return next((kind for prefix, kind in KINDS.items() if arch.startswith(prefix)), None)


def check_arch(arch: str) -> str:
    """`arch` if edgekit knows it, else an error listing what it knows."""
    if arch not in known_archs():
        raise EdgekitError(f"edgekit does not know the model {arch!r}; it knows {describe_known()}")
    return arch


def describe_known() -> str:
    """The known models, grouped by family, in one line."""
    groups: dict[str, list[str]] = {}
    for arch in known_archs():
        prefix = next(p for p in KINDS if arch.startswith(p))
        groups.setdefault(prefix, []).append(arch)
    return "; ".join(", ".join(names) for names in groups.values())


def build(arch: str, num_classes: int, *, transform_input: bool = False, aux_logits: bool = False) -> nn.Module:
    """An uninitialised torchvision `arch` (weights come from a checkpoint, never a download). `aux_logits`
    and `transform_input` apply to the families that have them and are ignored elsewhere."""
    import torchvision.models

    check_arch(arch)
    extra: dict[str, object] = {}
    if arch in AUX_HEADS:
        extra = {"aux_logits": aux_logits, "transform_input": transform_input, "init_weights": False}
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)


def switch_off_aux(model: nn.Module) -> None:
    """No auxiliary heads: forward() returns the logits alone, in train mode too."""
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
        for name in AUX_MODULES:
            if hasattr(model, name):
                setattr(model, name, None)


def deployable(model: nn.Module) -> nn.Module:
    """Eval mode without auxiliary heads, so forward() returns plain logits [N, classes]."""
    switch_off_aux(model)
    return model.eval()


def aux_heads(arch: str) -> tuple[AuxHead, ...]:
    return AUX_HEADS.get(arch, ())


def has_transform_input(arch: str) -> bool:
    return arch in WITH_TRANSFORM_INPUT


INIT_STD = {"GoogLeNet": 0.01, "Inception3": 0.1}  # torchvision's truncated-normal init, per class


def initialise(model: nn.Module) -> None:
    """torchvision's init for GoogLeNet/Inception v3 (built with init_weights=False; the others init themselves):
    a truncated normal of the family's std, or of the layer's own `stddev` (Inception v3's aux head)."""
    default = INIT_STD.get(type(model).__name__)
    if default is None:
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            std = float(getattr(module, "stddev", default))
            nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-2, b=2)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)


def default_preprocessing(arch: str) -> PreprocessSpec:
    """The eval transform of torchvision's first ImageNet weights for `arch` (their metadata; nothing downloaded)."""
    import torchvision.models

    weights = next(iter(torchvision.models.get_model_weights(arch)))
    transform = weights.transforms()
    return PreprocessSpec(
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        interpolation=transform.interpolation.value,
    )


@functools.cache
def _shapes(arch: str, num_classes: int, aux_logits: bool) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of `arch`, built on the meta device (no memory, no init) where it can be."""
    try:
        with torch.device("meta"):
            model = build(arch, num_classes, aux_logits=aux_logits)
    except (RuntimeError, NotImplementedError):  # RegNet computes its widths with .tolist(): build it for real
        with torch.no_grad():
            model = build(arch, num_classes, aux_logits=aux_logits)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def shapes(arch: str, aux_logits: bool = False) -> dict[str, tuple[int, ...]]:
    """`arch`'s state_dict shapes (for 1000 classes), `num_batches_tracked` left out."""
    return {k: v for k, v in _shapes(arch, 1000, aux_logits).items() if not k.endswith("num_batches_tracked")}


@functools.cache
def head_keys(arch: str) -> frozenset[str]:
    """The state_dict keys whose shape depends on the class count: the classifier and the aux heads' last layers."""
    two, three = _shapes(arch, 2, True), _shapes(arch, 3, True)
    return frozenset(key for key in two if two[key] != three.get(key))


def head_prefixes(arch: str) -> tuple[str, ...]:
    """Module prefixes of the layers replaced when the class count changes (`fc.`, `classifier.1.`, `aux1.fc2.`)."""
    return tuple(sorted({key.rpartition(".")[0] + "." for key in head_keys(arch)}))


def num_classes_of(arch: str, state: dict[str, torch.Tensor]) -> int | None:
    """The class count a state_dict's classifier has, or None where it has no classifier of `arch`'s."""
    main = [key for key in head_keys(arch) if key.endswith("weight") and not key.startswith(_aux_prefixes(arch))]
    tensor = state.get(main[0]) if len(main) == 1 else None
    return int(tensor.shape[0]) if tensor is not None and tensor.ndim >= 1 else None


def _aux_prefixes(arch: str) -> tuple[str, ...]:
    return tuple(f"{head.module}." for head in aux_heads(arch))


def without_aux(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefixes = _aux_prefixes(arch)
    return {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}


def blocks(model: nn.Module) -> tuple[str, ...]:
    """The model's blocks in forward order, for freezing: its children with the body containers opened one
    level, leaving out the classifier, the aux heads and what follows the last block with weights."""
    names: list[tuple[str, bool]] = []
    for name, child in _children(model):
        names.append((name, any(True for _ in child.parameters())))
    last = max((i for i, (_, weighted) in enumerate(names) if weighted), default=-1)
    return tuple(name for name, _ in names[: last + 1])


def _children(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    skipped = {"fc", "classifier", *AUX_MODULES}
    for name, child in model.named_children():
        if name in skipped or child is None:
            continue
        if name in BODY_CONTAINERS and isinstance(child, nn.Sequential):
            for inner, grandchild in child.named_children():
                yield f"{name}.{inner}", grandchild
        else:
            yield name, child


def check_input_size(model: nn.Module, crop: int, arch: str) -> None:
    """Refuse an input size the model cannot run at (AlexNet below 63 pixels, Inception v3 below 75), before
    any training or export starts."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, crop, crop))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise EdgekitError(f"{arch} cannot run on {crop}×{crop} inputs ({reason}); use a larger --crop") from None
    finally:
        model.train(was_training)


def stage_ends(model: nn.Module, example: torch.Tensor, count: int = 3) -> tuple[str, ...]:
    """The last block at each of the model's last `count` resolutions (GoogLeNet: inception3b, 4e, 5b; ResNet:
    layer2, layer3, layer4): where feature distillation matches a pruned student to its teacher."""
    sizes: dict[str, tuple[int, ...]] = {}
    names = blocks(model)
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: (
                sizes.__setitem__(name, tuple(out.shape[2:]))
                if isinstance(out, torch.Tensor) and out.ndim == 4
                else None
            )
        )
        for name in names
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    ends: dict[tuple[int, ...], str] = {}
    for name in names:
        if name in sizes:
            ends.pop(sizes[name], None)  # re-inserted last: dict order follows the latest block per size
            ends[sizes[name]] = name
    return tuple(ends.values())[-count:]


def classifier(model: nn.Module, crop: int) -> nn.Linear:
    """The Linear whose output is the model's output (`fc`, `classifier.1`, `classifier.6` ...), found by running
    the model: pruning must leave its outputs, the user's classes, whole."""
    produced: dict[int, nn.Linear] = {}
    handles = [
        module.register_forward_hook(lambda m, _i, out: produced.__setitem__(id(out), m))
        for module in model.modules()
        if isinstance(module, nn.Linear)
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, 3, crop, crop))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    found = produced.get(id(out))
    if found is None:
        raise EdgekitError("the model's output does not come from a Linear classifier; edgekit cannot tell its head")
    return found
