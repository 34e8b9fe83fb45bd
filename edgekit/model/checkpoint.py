"""Loading the checkpoints of torchvision classifiers users actually have.

The architecture (a torchvision builder name, `model/families.py`) is the one given (`--arch`), else the
one the checkpoint records (edgekit's own do), else the one its keys and shapes fit (`model/identify.py`).
Accepted: a plain `state_dict`; a dict wrapping it under `model_state_dict` / `state_dict` / `model`
/ `net` (with epoch, optimizer state, class names beside it); keys prefixed by DataParallel/DDP
(`module.`), torch.compile (`_orig_mod.`) or Lightning (`model.`); with or without the auxiliary
classifiers (GoogLeNet, Inception v3); any number of classes (from the classifier's weight). Loading is
`weights_only=True`: a pickled model object is refused unless the user says the file is trusted, because
unpickling runs code.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from edgekit.core.errors import EdgekitError, environment_problem
from edgekit.core.files import atomic_path, sha256_file
from edgekit.data.preprocess import PreprocessSpec
from edgekit.model import families
from edgekit.model.architecture import CHANNEL_PLAN_KEY, apply_channel_plan
from edgekit.model.identify import identify

WRAPPER_KEYS = ("model_state_dict", "state_dict", "model", "net")
STRIPPABLE_PREFIXES = ("module.", "_orig_mod.", "model.")
CLASS_NAME_KEYS = ("classes", "class_names", "labels", "idx_to_class", "class_to_idx")
ARCH_KEYS = ("arch", "architecture", "model_name")  # edgekit records "arch"; timm-style scripts the others
TRUST_FLAG = "--trust-pickle"


@dataclasses.dataclass
class LoadedModel:
    module: torch.nn.Module  # deployable: eval mode, no aux heads
    arch: str  # torchvision builder name, e.g. "resnet18"
    arch_source: str  # "--arch", "checkpoint", "inferred"
    class_names: tuple[str, ...]
    class_names_source: str  # "checkpoint", "--classes", "generated"
    transform_input: bool | None  # None: the model has no such setting (only GoogLeNet and Inception v3 do)
    transform_input_source: str | None  # "flag", "checkpoint", "default"
    preprocessing: PreprocessSpec  # recorded in the checkpoint, else the family's ImageNet eval transform
    checkpoint_form: str  # how the weights were found, for the manifest
    dropped_aux_keys: int
    sha256: str
    path: Path
    pruning: dict[str, Any] | None = None  # an `edgekit prune` checkpoint's record of what was done

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def save_checkpoint(checkpoint: dict[str, Any], out: Path) -> None:
    """torch.save to a temp file beside `out`, then rename: never a half-written checkpoint."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", message)
        if "Weights only load failed" in message and found:
            raise EdgekitError(
                f"{path} contains a pickled Python object ({found.group(1)}), and unpickling can run "
                f"arbitrary code; save the weights with torch.save(model.state_dict(), ...) or, if you "
                f"trust this file, pass {TRUST_FLAG}"
            ) from None
        raise EdgekitError(f"{path} is not a PyTorch checkpoint ({_first_line(message)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, zipfile.BadZipFile) as exc:
        # What torch.load raises for a file that is not (or no longer) a checkpoint: a bad zip or pickle
        # stream, a truncated record, a storage of the wrong size. Anything else is a bug and keeps its
        # traceback. (OSError covers zlib/CRC errors from a damaged archive.)
        if isinstance(exc, OSError) and environment_problem(exc):
            raise  # the machine's problem (EMFILE, EIO): the CLI says so
        reason = _first_line(str(exc)) or type(exc).__name__
        if "central directory" in reason or isinstance(exc, EOFError) or "unexpected EOF" in reason:
            reason = f"truncated or corrupt: {reason}"
        raise EdgekitError(f"cannot read {path} as a PyTorch checkpoint ({reason}); re-save or re-copy it") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _find_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str, Mapping[str, Any]]:
    """(state_dict, form, the wrapper dict or {}) from whatever torch.load returned."""
    if isinstance(obj, torch.nn.Module):
        return (
            dict(obj.state_dict()),
            "pickled module",
            {"transform_input": getattr(obj, "transform_input", None)},
        )
    if _is_state_dict(obj):
        return dict(obj), "state_dict", {}
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module):
                meta = {"transform_input": getattr(inner, "transform_input", None), **obj}
                return dict(inner.state_dict()), f"pickled module under '{key}'", meta
            if _is_state_dict(inner):
                return dict(inner), f"dict with '{key}'", obj
    kind = type(obj).__name__
    keys = f" with keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, Mapping) else ""
    raise EdgekitError(
        f"{path} holds a {kind}{keys} but no model weights; expected a state_dict or a dict with one of "
        f"{', '.join(WRAPPER_KEYS)}"
    )


# DenseNet checkpoints from before torchvision 0.3 name a dense layer's parts "norm.1", "conv.2"; torchvision
# renames them when it loads its own weights, and so does edgekit (the same pattern).
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights without wrapper prefixes, and with legacy DenseNet names in today's form."""
    state = {_LEGACY_DENSENET.sub(r"\1\2", key): value for key, value in state.items()}
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPABLE_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def check_architecture(
    model: torch.nn.Module, arch: str, state: dict[str, torch.Tensor], path: Path, ignore: tuple[str, ...] = ()
) -> None:
    """Refuse a state_dict that does not fit `model`, saying how (keys starting with `ignore` are skipped)."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)}
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    # BatchNorm's step counter is optional: older checkpoints and some exporters leave it out.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} {arch} key(s) missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
        raise EdgekitError(
            f"{path} is not a torchvision {arch} checkpoint: {'; '.join(parts)}; give the right one with "
            f"--arch NAME ({families.describe_known()})"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        key = wrong[0]
        raise EdgekitError(
            f"{path}: {len(wrong)} tensor(s) have the wrong shape for a torchvision {arch} "
            f"(e.g. {key}: {tuple(state[key].shape)}, expected {tuple(expected[key].shape)})"
        )


def class_names_from(meta: Mapping[str, Any], num_classes: int) -> list[str] | None:
    """Class names stored beside the weights, in output order; None where there are none. Metadata that
    is there but cannot be read as names is refused: guessing an order would mislabel every prediction."""
    for key in CLASS_NAME_KEYS:
        value = meta.get(key)
        if value is None:
            continue
        try:
            if key == "class_to_idx" and isinstance(value, Mapping):
                names = [name for name, _ in sorted(value.items(), key=lambda item: _index(item[1]))]
            elif isinstance(value, Mapping):
                names = [value[k] for k in sorted(value, key=_index)]
            elif isinstance(value, (list, tuple)):
                names = list(value)
            else:
                raise ValueError(f"a {type(value).__name__}")
        except (ValueError, TypeError) as exc:
            raise EdgekitError(
                f"the checkpoint's {key!r} cannot be read as class names ({exc}); pass --classes FILE "
                "(one name per line, in the model's output order)"
            ) from None
        if len(names) == num_classes and all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
            return names
    return None


def _index(value: Any) -> int:
    """An output index as metadata stores it: an int, or a string of one."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{str(value)[:40]!r} is not an output index")
    return int(value)


def read_weights(path: Path, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], str, Mapping[str, Any]]:
    """(state_dict with wrapper prefixes removed, how it was found, the dict around it) of any checkpoint."""
    if not path.is_file():
        raise EdgekitError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise EdgekitError(f"{path} is empty")
    state, form, meta = _find_state_dict(_torch_load(path, trust_pickle), path)
    return _strip_prefixes(state), form, meta


def arch_of(state: dict[str, torch.Tensor], meta: Mapping[str, Any], path: Path, given: str | None) -> tuple[str, str]:
    """(architecture, where it came from): `given` (--arch), else recorded in the checkpoint, else inferred."""
    if given is not None:
        return families.check_arch(given), "--arch"
    for key in ARCH_KEYS:
        recorded = meta.get(key)
        if isinstance(recorded, str) and recorded.strip():
            name = recorded.strip().removeprefix("torchvision.models.").lower()
            if name in families.known_archs():
                return name, "checkpoint"
    return identify(state, path), "inferred"


def decide_transform_input(arch: str, meta: Mapping[str, Any], given: bool | None) -> tuple[bool | None, str | None]:
    """(transform_input, where it came from) for the models that have it; (None, None) for the others."""
    if not families.has_transform_input(arch):
        if given is not None:
            raise EdgekitError(
                f"--transform-input/--no-transform-input apply to googlenet and inception_v3; {arch} has no such "
                "setting: leave the flag out"
            )
        return None, None
    if given is not None:
        return given, "flag"
    if isinstance(meta.get("transform_input"), bool):
        return bool(meta["transform_input"]), "checkpoint"
    # torchvision turns it on whenever the model is built with ImageNet weights, which is how users
    # fine-tune; a bare state_dict cannot tell, so compile checks this guess on the user's images.
    return True, "default"


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    transform_input: bool | None = None,
    class_names: list[str] | None = None,
    arch: str | None = None,
) -> LoadedModel:
    """Load a torchvision classifier's checkpoint in any common form into a deployable eval-mode module."""
    path = Path(path)
    state, form, meta = read_weights(path, trust_pickle)
    pruned = CHANNEL_PLAN_KEY in meta
    if pruned and arch is None and not any(isinstance(meta.get(k), str) for k in ARCH_KEYS):
        arch = families.DEFAULT_ARCH  # edgekit prune checkpoints from before other families were known
    chosen_arch, arch_source = arch_of(state, meta, path, arch)
    weights = families.without_aux(chosen_arch, state)
    num_classes = families.num_classes_of(chosen_arch, weights)
    if num_classes is None:
        raise EdgekitError(
            f"{path} is not a torchvision {chosen_arch} checkpoint: it has no {chosen_arch} classifier "
            f"({', '.join(sorted(families.head_prefixes(chosen_arch)))}; its first keys are "
            f"{', '.join(list(weights)[:3])}); give the right one with --arch NAME or leave --arch out"
        )
    chosen_transform, transform_source = decide_transform_input(chosen_arch, meta, transform_input)

    model = families.build(chosen_arch, num_classes, transform_input=bool(chosen_transform))
    if pruned:  # a pruned model: same layers, fewer channels
        apply_channel_plan(model, meta[CHANNEL_PLAN_KEY], chosen_arch)
    check_architecture(model, chosen_arch, weights, path)
    model.load_state_dict(weights, strict=False)

    from_checkpoint = None if class_names is not None else class_names_from(meta, num_classes)
    if class_names is not None:
        if len(class_names) != num_classes:
            raise EdgekitError(f"--classes lists {len(class_names)} names but the model has {num_classes} classes")
        names, names_source = list(class_names), "--classes"
    elif from_checkpoint is not None:
        names, names_source = from_checkpoint, "checkpoint"
    else:
        names, names_source = [f"class_{i}" for i in range(num_classes)], "generated"

    if isinstance(meta.get("preprocessing"), Mapping):
        preprocessing = PreprocessSpec.from_dict(dict(meta["preprocessing"]))
    else:  # what torchvision's ImageNet weights for this model were trained with: what fine-tuning starts from
        preprocessing = families.default_preprocessing(chosen_arch)

    return LoadedModel(
        module=families.deployable(model),
        arch=chosen_arch,
        arch_source=arch_source,
        class_names=tuple(names),
        class_names_source=names_source,
        transform_input=chosen_transform,
        transform_input_source=transform_source,
        preprocessing=preprocessing,
        checkpoint_form=form,
        dropped_aux_keys=len(state) - len(weights),
        sha256=sha256_file(path),
        path=path,
        # Only edgekit's own record (it comes with a channel plan): other tools use the key differently.
        pruning=dict(meta["pruning"])
        if CHANNEL_PLAN_KEY in meta and isinstance(meta.get("pruning"), Mapping)
        else None,
    )
