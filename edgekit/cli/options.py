"""Options and output helpers shared by several commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgekit.train.settings import AMP_MODES, AUGMENTATIONS, DEFAULT_RECOVER_AUGMENT, MAX_WORKERS

json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")


def devices_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--device NAME`, repeatable: boards over SSH (`edgekit devices`) that measure `what`."""
    return click.option(
        "--device",
        "devices",
        multiple=True,
        metavar="NAME",
        help=f"Measure {what} on this device over SSH (`edgekit devices`; repeat for several, timed in parallel, "
        "the slowest decides). Default --target: the one `edgekit devices check` recorded.",
    )


threads_option = click.option(
    "--threads",
    type=click.IntRange(min=0, max=4096),
    default=None,
    help="CPU threads (0 = all cores; default: the target's).",
)
resize_option = click.option(
    "--resize",
    type=click.IntRange(min=8),
    default=None,
    help="Resize the shorter side to this (default: the checkpoint's, else 256).",
)
crop_option = click.option(
    "--crop",
    type=click.IntRange(min=8),
    default=None,
    help="Centre crop = network input size (default: the checkpoint's, else 224).",
)
classes_option = click.option(
    "--classes",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The model's class names in output order: one per line or a JSON list (a plain state_dict has none; "
    "labelled folders are then matched by these names instead of by sorted order).",
)
arch_option = click.option(
    "--arch",
    metavar="NAME",
    default=None,
    help="The checkpoint's torchvision model (resnet18, mobilenet_v3_large, efficientnet_b0, ...). Default: the "
    "one the checkpoint records, else the one its layer names and shapes fit.",
)
trust_pickle_option = click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow checkpoints that hold pickled Python objects. Unpickling runs code: only for files you trust.",
)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def parse_int_list(value: str, name: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 1,8, got {value!r}", param_hint=name
        ) from None
    if not numbers or min(numbers) < minimum:
        raise click.BadParameter(f"values must be integers >= {minimum}", param_hint=name)
    return numbers


def parse_macs(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """'600M', '0.6G', '1.2e9' → a MAC count."""
    if value is None:
        return None
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(value[-1:].upper(), 1.0)
    number = value[:-1] if scale != 1.0 else value
    try:
        return float(number) * scale
    except ValueError:
        raise click.BadParameter(f"expected a MAC count such as 600M or 0.6G, got {value!r}", param=param) from None


def parse_ratio(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    """A share of channels (0.4), or 'auto': the largest ratio within --max-accuracy-drop (a search)."""
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected a share such as 0.4, or 'auto', got {value!r}", param=param) from None


def training_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where training runs (`finetune`, and recovery in `prune` and `compile --prune`); see train/settings.py."""
    options = [
        click.option(
            "--accelerator",
            default="auto",
            show_default=True,
            metavar="auto|cpu|cuda|cuda:N",
            help="Hardware to train on: auto is the GPU when PyTorch sees one, else the CPU. (Boards over SSH are "
            "--device NAME.)",
        ),
        click.option(
            "--amp",
            type=click.Choice(AMP_MODES),
            default="auto",
            show_default=True,
            help="Mixed-precision autocast while training. auto: BF16 on GPUs that have it, else FP16 with a "
            "gradient scaler; BF16 on CPUs that compute it natively (AVX-512 BF16, AMX), else FP32.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0, max=MAX_WORKERS),
            default=None,
            help="Image-loading worker processes per training process (default: from the cores; 0: none).",
        ),
        click.option(
            "--channels-last/--no-channels-last",
            default=None,
            help="NHWC memory layout while training (default: on; measured faster on GPUs and CPUs).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def training_settings(values: dict[str, Any], sync_batchnorm: bool = False) -> Any:
    """TrainingSettings from `training_options` (popped from the command's keyword arguments)."""
    from edgekit.train.settings import TrainingSettings

    return TrainingSettings(
        accelerator=values.pop("accelerator"),
        amp=values.pop("amp"),
        workers=values.pop("workers"),
        channels_last=values.pop("channels_last"),
        sync_batchnorm=sync_batchnorm,
    )


def pruning_options(ratio_flag: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The pruning options shared by `edgekit prune` (ratio: --ratio) and `edgekit compile` (--prune)."""
    options = [
        click.option(
            ratio_flag,
            "prune_ratio",
            callback=parse_ratio,
            default=None,
            help="Share of each layer's channels to remove (0-1), or 'auto': the largest within --max-accuracy-drop "
            "(searched, with recovery).",
        ),
        click.option(
            "--target-macs", callback=parse_macs, default=None, help="Prune in steps until MACs/image ≤ this (600M)."
        ),
        click.option(
            "--target-latency",
            type=float,
            default=None,
            help="Prune in steps until FP32 batch-1 latency (ms) on the target's backend, measured here, is ≤ this.",
        ),
        click.option(
            "--importance",
            type=click.Choice(["l1", "l2", "taylor"]),
            default="l2",
            show_default=True,
            help="Channel importance: weight magnitude, or Taylor (needs labelled images).",
        ),
        click.option(
            "--scope",
            type=click.Choice(["uniform", "global"]),
            default="uniform",
            show_default=True,
            help="uniform: every layer loses the ratio; global: channels ranked across layers.",
        ),
        click.option(
            "--steps",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Reach the ratio in N pruning steps, recovery epochs shared between them.",
        ),
        click.option("--round-to", type=click.IntRange(min=1), default=8, show_default=True, help="Channel multiple."),
        click.option(
            "--max-ratio",
            type=float,
            default=0.8,
            show_default=True,
            help="Most a MACs/latency search may remove from a layer.",
        ),
        click.option(
            "--sparsity", type=click.Choice(["2:4"]), default=None, help="2:4 sparse weights (TensorRT, Ampere+)."
        ),
        click.option(
            "--recover-data",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Labelled images (one sub-directory per class) for a recovery fine-tune after pruning.",
        ),
        click.option(
            "--recover-unlabelled",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Images without labels (any layout: photos of the deployment scene) that recovery distils the "
            "unpruned model's outputs on; with or instead of --recover-data.",
        ),
        click.option(
            "--recover-augment",
            type=click.Choice(AUGMENTATIONS),
            default=DEFAULT_RECOVER_AUGMENT,
            show_default=True,
            help="Recovery augmentation; strong adds wider crops, colour jitter and mixup/cutmix.",
        ),
        click.option(
            "--recover-epochs", type=click.IntRange(min=0), default=None, help="Recovery epochs (default 3 with data)."
        ),
        click.option("--recover-lr", type=float, default=0.01, show_default=True, help="Recovery learning rate."),
        click.option(
            "--distill/--no-distill",
            default=None,
            help="Distil from the unpruned model during recovery (default: on when recovering).",
        ),
        click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature."),
        click.option(
            "--feature-distill",
            type=float,
            default=0.0,
            show_default=True,
            help="Also match the unpruned model's last three stage outputs (GoogLeNet: inception3b, 4e, 5b; ResNet: "
            "layer2-4) with this loss weight.",
        ),
        click.option(
            "--lr-schedule",
            type=click.Choice(["cosine", "onecycle", "constant"]),
            default="cosine",
            show_default=True,
            help="Recovery learning-rate schedule.",
        ),
        click.option(
            "--search-step",
            type=float,
            default=0.1,
            show_default=True,
            help="A ratio search tries multiples of this up to --max-ratio.",
        ),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return training_options(command)

    return decorate


def prune_settings(values: dict[str, Any], ratio_flag: str, max_accuracy_drop: float | None) -> Any:
    """PruneSettings from the options above (popped from the command's keyword arguments); a ratio of 'auto'
    searches for the largest within `max_accuracy_drop`."""
    from edgekit.core.errors import EdgekitError
    from edgekit.optimize.prune_config import PruneSettings

    ratio = values.pop("prune_ratio")
    search = None
    if ratio == "auto":
        if max_accuracy_drop is None:
            raise EdgekitError(
                f"{ratio_flag} auto searches the largest ratio within a top-1 budget: give --max-accuracy-drop P "
                "and --recover-data DIR"
            )
        ratio, search = None, max_accuracy_drop
    return PruneSettings(
        ratio=ratio,
        search_drop_pts=search,
        scope=values.pop("scope"),
        steps=values.pop("steps"),
        distill_temperature=values.pop("temperature"),
        feature_distill=values.pop("feature_distill"),
        lr_schedule=values.pop("lr_schedule"),
        search_step=values.pop("search_step"),
        target_macs=values.pop("target_macs"),
        target_latency_ms=values.pop("target_latency"),
        importance=values.pop("importance"),
        round_to=values.pop("round_to"),
        max_ratio=values.pop("max_ratio"),
        sparsity=values.pop("sparsity"),
        recover_data=values.pop("recover_data"),
        recover_unlabelled=values.pop("recover_unlabelled"),
        recover_augment=values.pop("recover_augment"),
        training=training_settings(values),
        recover_epochs=values.pop("recover_epochs"),
        recover_lr=values.pop("recover_lr"),
        distill=values.pop("distill"),
    )


def _declared(stage: str) -> list[Any]:
    """Every backend's options of `stage` (`BackendOption`): each backend declares its own."""
    from edgekit.backends.option import declared_options

    return declared_options(stage)


def backend_options(stage: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The flags of every backend's `stage` options ("run": predict, bench; "build": compile, build), made from
    the backends' own declarations; `backend_option_values` collects them."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(_declared(stage)):
            if option.choices:
                kind: Any = {"type": click.Choice(option.choices), "default": None}
            elif option.int_range is not None:
                kind = {"type": click.IntRange(*option.int_range), "default": None}
            elif option.switch:
                kind = {"default": None}
            else:
                kind = {"is_flag": True, "default": None}
            command = click.option(option.flag, option.name, help=option.help, **kind)(command)
        return command

    return decorate


def backend_option_values(values: dict[str, Any], stage: str) -> dict[str, Any]:
    """The `stage` options given on the command line, by name (popped from the command's keyword arguments);
    one not given is None, and its backend decides what that means."""
    return {option.name: values.pop(option.name) for option in _declared(stage)}


def max_accuracy_drop_option(help: str, default: float | None = None) -> Callable[[Any], Any]:
    """--max-accuracy-drop: the one option name for the top-1 budget (`measure.decide.Budget`), everywhere.
    `--budget`, its old name on sweep and report, is still read (hidden) and means the same."""

    def old_name(ctx: click.Context, _param: click.Parameter, value: float | None) -> None:
        if value is not None:  # given on the command line: processed before the options that were not
            click.echo("note: --budget is now called --max-accuracy-drop", err=True)
            ctx.meta["edgekit_old_budget"] = value

    def new_name(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
        given = ctx.get_parameter_source(param.name or "") is not click.core.ParameterSource.DEFAULT
        return value if given else ctx.meta.get("edgekit_old_budget", value)

    def decorate(command: Any) -> Any:
        command = click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=default,
                               show_default=default is not None, callback=new_name, help=help)(command)  # fmt: skip
        return click.option("--budget", type=click.FloatRange(min=0), default=None, hidden=True, expose_value=False,
                            callback=old_name)(command)  # fmt: skip

    return decorate
