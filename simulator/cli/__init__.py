"""The `capsim` command line: thin Click commands over the library (docs/cli.md).

Exit codes: 0 success, 1 a check failed, 2 bad input or usage (a message on stderr, never a traceback).

The commands live by group: runs.py (run, batch, sweep, compare, blend), files.py (validate, check, schema,
scenarios, init, devices), fit.py (calibrate, backtest), stress.py (sensitivity, solve), data.py (data); what
they share is in options.py.
"""

from __future__ import annotations

import signal
import threading

import click

from .. import __version__
from ..devices import use_compile_cache
from . import data, files, fit, runs, stress
from .options import Terminated, _terminate, interrupted_code


class Interruptible(click.Group):
    """The command group: SIGTERM is handled like Ctrl-C while a command runs; an interrupted command exits
    130 (Ctrl-C) or 143 (SIGTERM) with a line on standard error, never Click's "Aborted!" and exit 1."""

    def invoke(self, ctx):
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
            click.echo(f"interrupted by {how}: finished folders are kept, nothing half-written is left", err=True)
            raise click.exceptions.Exit(interrupted_code(exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


@click.group(cls=Interruptible, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="capsim")
def main():
    """capsim: how likely small caps are to beat large caps, by how much, and at what risk."""
    use_compile_cache()


for _command in (
    runs.run,
    runs.batch_cmd,
    runs.sweep_cmd,
    files.validate,
    files.check,
    runs.compare_cmd,
    runs.blend_cmd,
    files.schema,
    files.scenarios,
    files.init,
    files.devices,
    fit.calibrate_cmd,
    fit.backtest_cmd,
    data.data,
    stress.sensitivity_cmd,
    stress.solve_cmd,
):
    main.add_command(_command)
