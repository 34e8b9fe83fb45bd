"""The `edgekit` command: parse, call the library, print; map a user's mistake to exit status 2.

Commands import their heavy dependencies inside the function, so `edgekit --help` is instant.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

from edgekit import __version__
from edgekit.cli.bench_cmd import bench
from edgekit.cli.build_cmd import build_command
from edgekit.cli.compile_cmd import compile_command
from edgekit.cli.devices_cmd import devices_group
from edgekit.cli.doctor_cmd import doctor
from edgekit.cli.finetune_cmd import finetune
from edgekit.cli.info_cmds import inspect_command, targets_command
from edgekit.cli.predict_cmd import predict
from edgekit.cli.prune_cmd import prune
from edgekit.cli.quantize_cmd import quantize
from edgekit.cli.report_cmd import report
from edgekit.cli.serve_cmds import export_group, serve_command
from edgekit.cli.sign_cmds import sign_command, verify_command
from edgekit.cli.sweep_cmd import sweep
from edgekit.core.errors import EdgekitError, environment_problem


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """Turn a fine-tuned torchvision classifier into a measured, deployable bundle for an edge device.

    Start with `edgekit compile MODEL`, then `edgekit predict BUNDLE IMAGES` and
    `edgekit bench BUNDLE --val DIR`.
    """


cli.add_command(finetune)
cli.add_command(compile_command)
cli.add_command(quantize)
cli.add_command(build_command)
cli.add_command(prune)
cli.add_command(predict)
cli.add_command(bench)
cli.add_command(report)
cli.add_command(sweep)
cli.add_command(inspect_command)
cli.add_command(sign_command)
cli.add_command(verify_command)
cli.add_command(export_group)
cli.add_command(serve_command)
cli.add_command(targets_command)
cli.add_command(doctor)
cli.add_command(devices_group)


def _fail(message: str, status: int) -> None:
    one_line = "; ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    click.echo(f"error: {one_line}", err=True)
    sys.exit(status)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so staging directories and partial files are removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a user's mistake is one `error:` line and exit 2; a bug keeps its traceback."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:  # not when the parent chose to ignore it (nohup)
            signal.signal(signum, _terminate)
    try:
        status = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except EdgekitError as exc:
        _fail(str(exc), 2)
    except click.UsageError as exc:
        command = f" {exc.ctx.command_path.split(' ', 1)[1]}" if exc.ctx and " " in exc.ctx.command_path else ""
        _fail(f"{exc.format_message()} (see `edgekit{command} --help`)", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (click.Abort, KeyboardInterrupt) as exc:
        # click turns KeyboardInterrupt (and so Terminated) into Abort, keeping it as the cause.
        stop = exc if isinstance(exc, Terminated) else exc.__cause__
        if isinstance(stop, Terminated):
            _fail(f"stopped by {signal.Signals(stop.signum).name}; nothing was written", 128 + stop.signum)
        _fail("interrupted; nothing was written", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        sys.exit(0)
    except OSError as exc:
        problem = environment_problem(exc)
        if problem is None:
            raise
        _fail(f"{problem}; nothing was written", 2)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
