"""Options and output helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from edgekit.train.settings import AMP_MODES, AUGMENTATIONS, DEFAULT_RECOVER_AUGMENT, MAX_WORKERS


def renamed_option(old: str, new: str, name: str) -> Callable[[Any], Any]:
    """An option's old flag, hidden: still read, with a note giving the new name, so scripts keep working.
    The new option's callback (`new_or_old_name`) takes its value when the new flag was not given."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:  # given on the command line, so processed before the options that were not
            click.echo(f"note: {old} is now called {new}", err=True)
            ctx.meta[f"edgekit_old:{name}"] = value

    return click.option(old, f"old_{name}", default=None, hidden=True, expose_value=False, callback=remember)


def new_or_old_name(parse: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """The callback of an option that has an old name: its own value, else the old flag's; then `parse`."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        old = ctx.meta.get(f"edgekit_old:{param.name}")
        if old is not None and ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.DEFAULT:
            value = param.type_cast_value(ctx, old)
        return parse(ctx, param, value) if parse is not None else value

    return callback


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the results on stdout as JSON Lines: objects carrying json_version and command "
    "(docs/errors.md; schemas in edgekit/cli/json_schemas/).",
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars or progress lines on stderr (results and errors still print)."
)
force_option = click.option(
    "--force", is_flag=True, help="Replace an existing output of the same name instead of refusing (only that)."
)
target_option = click.option(
    "--target",
    "-t",
    default=None,
    metavar="NAME|FILE",
    help="Target device: a name from `edgekit targets` or a target TOML file (default: this host).",
)
calib_option = click.option(
    "--calib",
    type=click.Path(path_type=Path, file_okay=False),
    help="INT8 calibration images: photos like the ones the model will see (any layout, no labels needed).",
)
calib_size_option = click.option(
    "--calib-size", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration images to use."
)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mean_minmax", "histogram")
method_option = click.option(
    "--method",
    type=click.Choice(CALIBRATION_METHODS),
    default=None,
    help="INT8 calibration method (ONNX Runtime / TensorRT: minmax, percentile, entropy; OpenVINO's NNCF: "
    "mean_minmax, minmax, histogram; LiteRT: minmax). Default: each quantizer's own (ONNX Runtime: minmax), then, "
    "in compile, the others if the accuracy guard asks for them.",
)
iterations_option = click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Timed runs per batch size (p90 needs 50).",
)


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
    help="CPU threads (0 = all cores). Default: the target's setting (for a bundle, the target it was compiled "
    "for), else all cores.",
)
resize_option = click.option(
    "--resize",
    type=click.IntRange(min=8),
    default=None,
    help="Resize the shorter side to this before the centre crop (default: what the model records, else its "
    "family's: 256 for most, 342 for Inception v3).",
)
crop_option = click.option(
    "--crop",
    type=click.IntRange(min=8),
    default=None,
    help="Centre crop = the network's input size (default: what the model records, else its family's: 224 for "
    "most, 299 for Inception v3).",
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


def print_json(data: Mapping[str, Any], record_type: str | None = None) -> None:
    """One `--json` record on stdout, tagged with json_version and this command (core/json_lines.py)."""
    from edgekit.core.json_lines import json_line

    command_path = click.get_current_context().command_path
    click.echo(json_line(command_path.split(" ", 1)[-1], data, record_type))


class SomeInputsFailed(click.ClickException):
    """The command finished, but some of its inputs could not be used (each reported): exit 3, not 0."""

    exit_code = 3


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


def parse_ratios(_ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float | str, ...] | None:
    """Shares of channels (0.4, or 0,0.3,0.5 for sweep), or 'auto': the largest within --max-accuracy-drop."""
    if value is None:
        return None
    ratios: list[float | str] = []
    for part in (part.strip() for part in value.split(",")):
        try:
            ratios.append(part if part == "auto" else float(part))
        except ValueError:
            raise click.BadParameter(f"expected a share such as 0.4, or 'auto', got {part!r}", param=param) from None
    return tuple(ratios)


def one_ratio(ratios: tuple[float | str, ...] | None) -> float | str | None:
    """--prune-ratio where one pruning is made (prune, compile): several are for `edgekit sweep`."""
    if ratios is None:
        return None
    if len(ratios) != 1:
        raise click.BadParameter("takes one ratio here; `edgekit sweep` compares several", param_hint="--prune-ratio")
    return ratios[0]


prune_ratio_option = click.option(
    "--prune-ratio",
    "prune_ratio",
    callback=new_or_old_name(parse_ratios),
    default=None,
    metavar="RATIO",
    help="Share of each layer's channels to remove (0-1), or 'auto': the largest within --max-accuracy-drop "
    "(searched, with recovery). sweep: comma-separated ratios, 0 = unpruned.",
)


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


def pruning_options(old_ratio_flag: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The pruning options shared by `edgekit prune` and `edgekit compile`; `old_ratio_flag` is the ratio's name
    there before it was --prune-ratio everywhere (still read)."""
    options = [
        prune_ratio_option,
        renamed_option(old_ratio_flag, "--prune-ratio", "prune_ratio"),
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


def prune_settings(values: dict[str, Any], max_accuracy_drop: float | None) -> Any:
    """PruneSettings from the options above (popped from the command's keyword arguments); a ratio of 'auto'
    searches for the largest within `max_accuracy_drop`."""
    from edgekit.core.errors import EdgekitError
    from edgekit.optimize.prune_config import PruneSettings

    ratio = one_ratio(values.pop("prune_ratio"))
    search = None
    if ratio == "auto":
        if max_accuracy_drop is None:
            raise EdgekitError(
                "--prune-ratio auto searches the largest ratio within a top-1 budget: give --max-accuracy-drop P "
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


max_accuracy_drop_option = click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=None,
    callback=new_or_old_name(),
    metavar="POINTS",
    help="Top-1 points the result may lose against FP32 (or, pruning, the original) on labelled images; a loss "
    "inside the noise is not held against it. Default: unchecked by compile and prune; 1.0 for --precision "
    "auto, sweep and report.",
)


def with_old_names(*renames: tuple[str, str, str]) -> Callable[[Any], Any]:
    """`renamed_option` for each (old flag, new flag, parameter name)."""

    def decorate(command: Any) -> Any:
        for old, new, name in renames:
            command = renamed_option(old, new, name)(command)
        return command

    return decorate


class SectionedCommand(click.Command):
    """A command whose --help lists its options in sections (as trtexec groups its flags), for commands with
    dozens of them; `sections` maps a title to parameter names, and the options no section names come last
    under `rest`."""

    def __init__(self, *args: Any, sections: dict[str, tuple[str, ...]], rest: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections
        self.rest = rest

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        help_option = self.get_help_option(ctx)
        rows = {param.name: param.get_help_record(ctx) for param in self.get_params(ctx) if param is not help_option}
        named = {name for names in self.sections.values() for name in names}
        unknown = named - rows.keys()
        if unknown:  # a renamed option would otherwise vanish from --help
            raise AssertionError(f"--help sections name options {self.name} does not have: {sorted(unknown)}")
        groups = [*self.sections.items(), (self.rest, tuple(name for name in rows if name not in named))]
        for title, names in groups:
            records = [rows[name] for name in names if rows[name] is not None]
            if "as_json" in names and help_option is not None:  # --help beside --json, with the output options
                records.append(help_option.get_help_record(ctx))
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


PRUNING_SECTIONS = {
    "Pruning": ("prune_ratio", "target_macs", "target_latency", "importance", "scope", "steps", "round_to",
                "max_ratio", "search_step", "sparsity"),
    "Recovery (fine-tuning after pruning)": ("recover_data", "recover_unlabelled", "recover_augment", "recover_epochs",
                                             "recover_lr", "lr_schedule", "distill", "temperature", "feature_distill"),
    "Training hardware": ("accelerator", "amp", "workers", "channels_last"),
}  # fmt: skip
