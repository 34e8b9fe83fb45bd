"""Loading every common checkpoint form, and refusing the wrong ones with a clear reason."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
import torchvision

from edgekit.core.errors import EdgekitError
from edgekit.data.classes import read_class_file
from edgekit.model.checkpoint import load_checkpoint

CLASSES = ["coat", "dress", "pullover", "sandal", "shirt", "trouser", "tshirt_top"]


def _forms(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """The shapes in which users save a fine-tuned GoogLeNet."""
    no_aux = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    return {
        "plain": state,
        "plain_ordered": collections.OrderedDict(state),
        "no_aux": no_aux,
        "model_state_dict": {
            "epoch": 7,
            "model_state_dict": state,
            "optimizer_state_dict": optimizer.state_dict(),
            "classes": CLASSES,
        },
        "state_dict": {"state_dict": state, "class_to_idx": {n: i for i, n in enumerate(CLASSES)}},
        "model": {"model": no_aux, "best_acc": 0.91},
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "compiled_ddp": {"state_dict": {f"_orig_mod.module.{k}": v for k, v in state.items()}},
    }


@pytest.mark.parametrize(
    "form", ["plain", "plain_ordered", "no_aux", "model_state_dict", "state_dict", "model", "ddp", "compiled_ddp"]
)
def test_every_form_loads_the_same_network(
    form: str, trained: dict, torch_model: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / f"{form}.pth"
    torch.save(_forms(trained["checkpoint"]["model_state_dict"])[form], path)
    loaded = load_checkpoint(path)
    assert loaded.num_classes == 7
    assert loaded.module.aux1 is None and loaded.module.aux2 is None and not loaded.module.training
    assert loaded.transform_input is True and loaded.transform_input_source == "default"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), torch_model(x))
    if form in ("model_state_dict", "state_dict"):
        assert list(loaded.class_names) == CLASSES and loaded.class_names_source == "checkpoint"
    else:
        assert loaded.class_names[0] == "class_0" and loaded.class_names_source == "generated"


def test_edgekit_checkpoint_carries_its_metadata(trained: dict) -> None:
    loaded = load_checkpoint(trained["path"])
    assert loaded.transform_input_source == "checkpoint"
    assert loaded.preprocessing is not None and loaded.preprocessing.crop == 64
    assert loaded.dropped_aux_keys > 0
    assert list(loaded.class_names) == trained["checkpoint"]["classes"]


def test_transform_input_flag_and_class_names_override(trained: dict, tmp_path: Path) -> None:
    loaded = load_checkpoint(trained["path"], transform_input=False, class_names=[f"c{i}" for i in range(7)])
    assert loaded.transform_input is False and loaded.transform_input_source == "flag"
    assert loaded.module.transform_input is False
    assert loaded.class_names[3] == "c3" and loaded.class_names_source == "--classes"
    with pytest.raises(EdgekitError, match="3 names but the model has 7"):
        load_checkpoint(trained["path"], class_names=["a", "b", "c"])


@pytest.mark.parametrize("classes", [3, 12])
def test_any_number_of_classes(classes: int, tmp_path: Path) -> None:
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=classes)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    assert load_checkpoint(path).num_classes == classes


def test_class_file_formats(tmp_path: Path) -> None:
    text = tmp_path / "names.txt"
    text.write_text("cat\n\ndog\n")
    assert read_class_file(text) == ["cat", "dog"]
    js = tmp_path / "names.json"
    js.write_text('["a", "b", "c"]')
    assert read_class_file(js) == ["a", "b", "c"]
    dup = tmp_path / "dup.txt"
    dup.write_text("a\na\n")
    with pytest.raises(EdgekitError, match="twice"):
        read_class_file(dup)


def test_pickled_model_is_refused_unless_trusted(torch_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(torch_model, path)
    with pytest.raises(EdgekitError, match=r"pickled Python object.*--trust-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust_pickle=True)
    assert loaded.checkpoint_form == "pickled module" and loaded.transform_input_source == "checkpoint"


def test_wrong_architecture_says_how_many_keys(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), path)
    with pytest.raises(EdgekitError, match=r"not a torchvision googlenet checkpoint: \d+ googlenet key\(s\) missing"):
        load_checkpoint(path, arch="googlenet")
    loaded = load_checkpoint(path)  # without --arch: what its keys and shapes say it is
    assert (loaded.arch, loaded.arch_source, loaded.num_classes) == ("resnet18", "inferred", 7)


def test_wrong_width_is_a_shape_error(trained: dict, tmp_path: Path) -> None:
    state = dict(trained["checkpoint"]["model_state_dict"])
    state["conv1.conv.weight"] = torch.zeros(32, 3, 7, 7)
    path = tmp_path / "narrow.pt"
    torch.save(state, path)
    with pytest.raises(
        EdgekitError, match=r"has the layers of googlenet but not their shapes \(e.g. conv1.conv.weight"
    ):
        load_checkpoint(path)
    with pytest.raises(EdgekitError, match=r"wrong shape.*conv1.conv.weight"):
        load_checkpoint(path, arch="googlenet")


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "no_weights"])
def test_unreadable_files_give_one_clear_error(kind: str, trained: dict, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes(trained["path"].read_bytes()[:1_000_000])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "no_weights":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    else:
        path.write_bytes(b"")
    with pytest.raises(EdgekitError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
