"""The torchvision classifiers beyond GoogLeNet, through every stage edgekit has.

Each family is trained briefly here (a small input size, a few real Fashion-MNIST images) the way users
fine-tune, then compiled and run; what is asserted is what a user relies on: the architecture is found
from the file alone, the bundle predicts what PyTorch predicts, INT8 passes its guard or refuses with
exit 2, a pruned model of every structural kind compiles.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torchvision

import edgekit
from edgekit.backends.qdq_rules import check_tensorrt_qdq, residual_adds
from edgekit.core.errors import EdgekitError
from edgekit.data.batches import load_images
from edgekit.model import families
from edgekit.model.checkpoint import load_checkpoint
from edgekit.model.finetune import FinetuneConfig, run_finetune
from edgekit.model.identify import identify
from tests.conftest import TRAINING_THREADS

# The families the issue names, each at every size whose layers differ (keys or shapes).
INFERRED = (
    "googlenet", "resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "densenet121", "vgg11", "vgg11_bn",
    "vgg16", "vgg16_bn", "inception_v3", "alexnet", "shufflenet_v2_x1_0", "regnet_y_400mf",
)  # fmt: skip
# One of each family through finetune → compile → predict (the larger sizes share their code paths).
END_TO_END = (
    "resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "vgg11_bn", "inception_v3",
    "alexnet", "shufflenet_v2_x0_5", "regnet_y_400mf",
)  # fmt: skip
CLASSES = (0, 1, 2)


def _crop(arch: str) -> int:
    return {"inception_v3": 80, "alexnet": 64}.get(arch, 48)  # the smallest sizes these run at, with margin


def _plain_state_dict(arch: str, num_classes: int = 5) -> dict[str, torch.Tensor]:
    """What a user's training script saves: torch.save(model.state_dict()) of a torchvision model."""
    extra = {"init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    try:
        with torch.device("meta"):  # shapes are all identification reads
            model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra)
    except RuntimeError:  # RegNet computes its widths from tensors
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    return model.state_dict()


@pytest.mark.parametrize("arch", INFERRED)
def test_architecture_is_inferred_from_a_plain_state_dict(arch: str) -> None:
    state = _plain_state_dict(arch)
    assert identify(state, "model.pt") == arch
    # DataParallel's prefix is stripped before identification; the class count never matters.
    assert families.num_classes_of(arch, state) == 5


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def _assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_and_unfitting_checkpoints_exit_2_naming_arch(tmp_path: Path) -> None:
    unknown = tmp_path / "squeezenet.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), unknown)
    _assert_refused(_cli("inspect", unknown), "not a torchvision model edgekit knows", "--arch", "resnet18")

    # A ResNet-18 whose channels were cut by hand (not by `edgekit prune`, which records the new shapes).
    state = torchvision.models.resnet18(weights=None, num_classes=4).state_dict()
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:32]
    narrowed = tmp_path / "narrowed.pt"
    torch.save(state, narrowed)
    _assert_refused(_cli("inspect", narrowed), "has the layers of resnet18 but not their shapes", "--arch")


def test_arch_flag_is_checked_and_inspect_shows_the_architecture(tmp_path: Path, run_cli) -> None:
    resnet = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=4).state_dict(), resnet)
    status, _, stderr = run_cli("compile", resnet, "--arch", "resnet9000")
    assert status == 2 and "does not know the model 'resnet9000'" in stderr, stderr
    status, _, stderr = run_cli("compile", resnet, "--arch", "mobilenet_v2", "--out", tmp_path / "b")
    assert status == 2 and "not a torchvision mobilenet_v2 checkpoint" in stderr and not (tmp_path / "b").exists()
    status, _, stderr = run_cli("compile", resnet, "--transform-input", "--out", tmp_path / "b")
    assert status == 2 and "resnet18 has no such setting" in stderr, stderr
    status, stdout, stderr = run_cli("inspect", resnet, "--json")
    assert status == 0, stderr
    assert '"arch": "resnet18"' in stdout and '"arch_source": "inferred"' in stdout


@pytest.fixture(scope="module")
def families_trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short epoch of each END_TO_END family from scratch, on real images, at a small input size."""
    root = tmp_path_factory.mktemp("families")
    out: dict[str, Path] = {}
    for arch in END_TO_END:
        crop = _crop(arch)
        path = root / f"{arch}.pt"
        config = FinetuneConfig(
            data="fashion-mnist", out=path, arch=arch, per_class=8, val_per_class=4, class_subset=CLASSES,
            resize=crop + crop // 8, crop=crop, epochs=1, batch_size=8, augment=False, lr=0.02,
            threads=TRAINING_THREADS,
        )  # fmt: skip
        run_finetune(config)
        out[arch] = path
    return out


@pytest.mark.parametrize("arch", END_TO_END)
def test_each_family_compiles_and_predicts_as_pytorch_does(
    arch: str, families_trained: dict[str, Path], data_dirs: dict, tmp_path: Path, run_cli
) -> None:
    checkpoint = families_trained[arch]
    recorded = torch.load(checkpoint, weights_only=True)
    assert recorded["arch"] == arch
    status, _, stderr = run_cli("compile", checkpoint, "--out", tmp_path / "bundle", "--backend", "onnxruntime", "-q")
    assert status == 0, stderr
    bundle = edgekit.load(tmp_path / "bundle")
    manifest = bundle.manifest.section("model")
    assert (manifest["arch"], manifest["arch_source"]) == (arch, "checkpoint")
    status, shown, stderr = run_cli("inspect", tmp_path / "bundle")
    assert status == 0 and f"{arch} (checkpoint)" in shown, stderr
    files = [f for name in ("tshirt_top", "trouser", "pullover") for f in sorted((data_dirs["val"] / name).iterdir())]
    inputs = load_images(files[::3], bundle.preprocessing).inputs
    with torch.no_grad():
        expected = load_checkpoint(checkpoint).module(torch.from_numpy(inputs)).argmax(1).numpy()
    predicted = np.array([p.index for p in bundle.predict(files[::3])])
    assert np.mean(predicted == expected) >= 0.995, (predicted, expected)


# One per structural kind: residual adds, depthwise + squeeze-excitation, dense concatenation, plain.
KINDS = {
    "residual": "resnet18",
    "depthwise+SE": "mobilenet_v3_small",
    "dense concat": "densenet121",
    "plain": "alexnet",
}


@pytest.fixture(scope="module")
def calib_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 images of the three classes: 48 calibrate, the guard holds out the rest (kept small for the suite)."""
    from edgekit.data.fashion_mnist import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("calib") / "calib", "train", 30, classes=CLASSES, seed=3)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_prunes_then_int8_passes_the_guard_or_refuses(
    kind: str, families_trained: dict[str, Path], calib_folder: Path, tmp_path: Path
) -> None:
    arch = KINDS[kind]
    pruned = tmp_path / "pruned.pt"
    result = _cli("prune", families_trained[arch], "--prune-ratio", "0.3", "--out", pruned, "-q")
    assert result.returncode == 0, result.stderr
    loaded = load_checkpoint(pruned)
    assert loaded.arch == arch and loaded.pruning is not None
    original = load_checkpoint(families_trained[arch])
    assert sum(p.numel() for p in loaded.module.parameters()) < sum(p.numel() for p in original.module.parameters())
    assert families.classifier(loaded.module, _crop(arch)).out_features == len(CLASSES)  # the head is left whole

    bundle = tmp_path / "int8"
    result = _cli(
        "compile", pruned, "--precision", "int8", "--calib", calib_folder, "--calib-size", "48", "--out", bundle,
        "--backend", "onnxruntime", "-q",
    )  # fmt: skip
    if result.returncode == 0:
        guard = edgekit.load(bundle).manifest.section("quantization")["guard"]
        assert guard["verdict"] in ("pass", "unconfirmed") and guard["top1_agreement"] >= 0.99, guard
    else:
        _assert_refused(result, "no build meets the accuracy rules")
        assert not bundle.exists()


def test_tensorrt_placement_quantizes_both_inputs_of_residual_adds(families_trained: dict, tmp_path: Path) -> None:
    from edgekit.backends.qdq import quantize_int8
    from edgekit.export.onnx_export import export_onnx

    for arch in ("resnet18", "mobilenet_v3_small"):
        fp32, int8 = tmp_path / f"{arch}.onnx", tmp_path / f"{arch}.int8.onnx"
        export_onnx(load_checkpoint(families_trained[arch]).module, fp32, _crop(arch), 13)
        size = _crop(arch)
        calibration = np.random.default_rng(0).normal(size=(8, 3, size, size)).astype(np.float32)
        quantize_int8(fp32, int8, calibration, placement="tensorrt")
        model = onnx.load(str(int8))
        assert residual_adds(onnx.load(str(fp32))), arch  # there are residual adds to check
        assert check_tensorrt_qdq(model) == [], arch
        # The rule catches a residual add that reads its skip input in float.
        add = next(n for n in model.graph.node if n.name in residual_adds(model))
        dq = next(n for n in model.graph.node if n.output[0] == add.input[1] and n.op_type == "DequantizeLinear")
        quantize = next(n for n in model.graph.node if n.output[0] == dq.input[0])
        add.input[1] = quantize.input[0]
        assert [v.rule for v in check_tensorrt_qdq(model)] == ["residual-add"], arch


def test_blocks_layer_groups_and_stage_ends_are_each_familys_own(tmp_path: Path) -> None:
    from edgekit.export.onnx_export import export_onnx
    from edgekit.export.onnx_file import layer_groups

    resnet = families.build("resnet18", 3)
    assert families.blocks(resnet)[-4:] == ("layer1", "layer2", "layer3", "layer4")
    assert families.stage_ends(resnet, torch.zeros(1, 3, 64, 64)) == ("layer2", "layer3", "layer4")
    export_onnx(resnet.eval(), tmp_path / "r.onnx", 64, 13)
    assert {"layer3.1", "fc"} <= set(layer_groups(tmp_path / "r.onnx"))
    efficient = families.build("efficientnet_b0", 3)
    assert families.blocks(efficient)[5] == "features.5"
    export_onnx(efficient.eval(), tmp_path / "e.onnx", 64, 13)
    assert "features.5" in layer_groups(tmp_path / "e.onnx")
    googlenet = families.build("googlenet", 3, aux_logits=True)
    assert families.stage_ends(googlenet, torch.zeros(1, 3, 96, 96)) == ("inception3b", "inception4e", "inception5b")
    with pytest.raises(EdgekitError, match=r"does not know the model .vit_b_16.*resnet18"):
        families.check_arch("vit_b_16")


@pytest.mark.parametrize("trained_with", [True, False])
def test_inception_v3_transform_input_is_read_from_its_first_layer(trained_with: bool, data_dirs: dict) -> None:
    """The evidence GoogLeNet's transform_input is decided by works on Inception v3's Conv2d_1a_3x3: its
    BatchNorm statistics, gathered on real images under one setting, pick that setting on other images."""
    from edgekit.model.evidence import transform_input_evidence

    spec = families.default_preprocessing("inception_v3").with_overrides(resize=90, crop=80)
    files = [f for name in ("tshirt_top", "trouser", "pullover") for f in sorted((data_dirs["train"] / name).iterdir())]
    model = families.build("inception_v3", 3, transform_input=trained_with)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: the statistics of exactly these images
    with torch.no_grad():
        model.train()(torch.from_numpy(load_images(files[:48], spec).inputs))
    evidence = transform_input_evidence(families.deployable(model), load_images(files[48:96], spec).inputs)
    assert evidence is not None and evidence.strong and evidence.best is trained_with, evidence


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "efficientnet_b0", "densenet121", "vgg11", "resnet18"])
def test_litert_rebuild_reads_each_familys_ops(arch: str, tmp_path: Path) -> None:
    """HardSwish/HardSigmoid (MobileNetV3), SiLU as Sigmoid·Mul and SE (EfficientNet), dense concats and
    functional pooling (DenseNet), VGG's pool as matmuls, residual adds: the ONNX file rebuilt for LiteRT
    computes what ONNX Runtime computes."""
    import onnxruntime

    from edgekit.backends.litert.onnx_to_torch import onnx_to_torch
    from edgekit.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = families.build(arch, 4).eval()
    for module in model.modules():  # statistics that are not the identity, so BatchNorm is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{arch}.onnx"
    export_onnx(model, path, 64, 13)
    batch = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    expected = onnxruntime.InferenceSession(str(path)).run(None, {"input": batch})[0]
    with torch.no_grad():
        rebuilt = onnx_to_torch(path)(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-3, atol=1e-4)


def test_freezing_and_aux_loss_follow_the_family() -> None:
    from edgekit.model.freeze import active_aux_heads, apply_freeze, frozen_blocks
    from edgekit.train.objectives import LabelLoss

    resnet = families.build("resnet18", 3)
    frozen = frozen_blocks("hybrid", "layer2", families.blocks(resnet), "resnet18")
    apply_freeze(resnet, (), frozen)
    trains = {name: any(p.requires_grad for p in resnet.get_submodule(name).parameters()) for name in
              ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")}  # fmt: skip
    assert trains == {"conv1": False, "layer1": False, "layer2": False, "layer3": True, "layer4": True, "fc": True}

    inception = families.build("inception_v3", 3, aux_logits=True)
    heads = families.aux_heads("inception_v3")
    assert active_aux_heads(heads, frozen_blocks("hybrid", "Mixed_6d", families.blocks(inception), "x")) == heads
    assert active_aux_heads(heads, frozen_blocks("hybrid", "Mixed_6e", families.blocks(inception), "x")) == ()
    targets = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    outputs = inception.train()(torch.randn(2, 3, 299, 299))  # the aux head needs 299
    loss, _ = LabelLoss({head.output: head.weight for head in heads})(outputs, torch.empty(0), targets)
    loss.backward()
    assert inception.AuxLogits.fc.weight.grad is not None and inception.AuxLogits.fc.weight.grad.abs().sum() > 0


def test_imagenet_weights_of_another_family_start_a_finetune(tmp_path: Path) -> None:
    """The file torchvision's hub would have saved (resnet18-f37072fd.pth: a plain 1000-class state_dict)
    starts a fine-tune on the user's classes: the body is loaded, the classifier replaced."""
    from edgekit.model.transfer import starting_point

    imagenet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(imagenet.state_dict(), path)
    start = starting_point(str(path), ("cat", "dog"))
    assert start.arch == "resnet18" and start.transform_input is None and start.pretrained
    assert start.model.fc.out_features == 2 and "1000 → 2 new classes" in start.description
    torch.testing.assert_close(start.model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)


def test_legacy_densenet_keys_load(tmp_path: Path) -> None:
    """DenseNet checkpoints saved before torchvision renamed `norm.1` to `norm1` still load."""
    model = torchvision.models.densenet121(weights=None, num_classes=3).eval()
    legacy = {
        key.replace("norm1.", "norm.1.").replace("conv2.", "conv.2.") if ".denselayer" in key else key: value
        for key, value in model.state_dict().items()
    }
    assert any(".norm.1." in key for key in legacy)
    path = tmp_path / "densenet-old.pt"
    torch.save(legacy, path)
    loaded = load_checkpoint(path)
    assert loaded.arch == "densenet121"
    batch = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(batch), model(batch))


def test_channel_plans_of_before_other_families_still_load() -> None:
    """A GoogLeNet pruned by an earlier edgekit stored format 1 (convs and linears only, BatchNorm implied):
    it still loads, into the same network a format-2 plan describes."""
    import torch_pruning as tp

    from edgekit.model.architecture import apply_channel_plan, channel_plan

    torch.manual_seed(0)
    pruned = families.deployable(families.build("googlenet", 3))
    classifier = families.classifier(pruned, 64)
    tp.pruner.BasePruner(pruned, torch.zeros(1, 3, 64, 64), importance=tp.importance.MagnitudeImportance(),
                         pruning_ratio=0.25, ignored_layers=[classifier]).step()  # fmt: skip
    plan = channel_plan(pruned)
    assert plan["format"] == 2 and plan["layers"]["inception3a.branch1.bn"] == [48]
    old = {"format": 1, "layers": {k: v[:2] for k, v in plan["layers"].items() if len(v) > 1}}
    for described in (plan, old):
        fresh = apply_channel_plan(families.deployable(families.build("googlenet", 3)), described, "googlenet")
        fresh.load_state_dict(pruned.state_dict())
        batch = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(fresh.eval()(batch), pruned.eval()(batch))
    with pytest.raises(EdgekitError, match="expected 3 positive integers"):
        apply_channel_plan(families.build("googlenet", 3), {"format": 2, "layers": {"conv1.conv": [3, 48]}}, "x")
