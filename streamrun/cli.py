"""The ``streamrun`` command line.

``streamrun run -c CONFIG`` runs one segment. Started with no arguments (as WESTPA
starts a propagator), streamrun reads its config from ``$STREAMRUN_CONFIG`` or the
``streamrun:`` section of ``$WEST_SIM_ROOT/west.cfg`` and runs the segment WESTPA
describes in ``WEST_*`` variables.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import StreamrunError

CONFIG_HELP = """\b
Config keys (YAML; in west.cfg under 'streamrun:'; paths relative to the file):
  engine.name             engine adapter (lammps)
  engine.input            engine input script; LAMMPS must contain
                            fix stream all imd ${streamrun_port} version 3 &
                                trate ${streamrun_every} unwrap on
                            run ${streamrun_nsteps}
  engine.nsteps           MD steps per segment
  engine.frame_interval   MD steps between streamed frames
  engine.variables        name: value given to the engine (lmp -var);
                          {config_dir}, {workdir} in values are filled in
  engine.executable       engine program (default lmp, next to Python or on PATH)
  engine.args             extra engine arguments
  engine.workdir          where the engine runs (default: current folder)
  engine.ready_timeout    s to wait for the engine to accept IMD (300)
  topology                MDAnalysis topology (e.g. LAMMPS data file)
  topology_format, topology_options, start, start_format
  pcoord                  list of coordinates, e.g.
                            - {type: distance, a: 'type 3', b: 'type 4'}
                            - {type: plugin, function: 'mymod:f', selections: [...]}
  rows                    pcoord rows (WESTPA pcoord_len); checked against nsteps
  output                  pcoord file ($WEST_PCOORD_RETURN or pcoord.dat)
  log                     engine log (streamrun-engine.log)
  stream.timeout          s without a frame before failing (600)
  stream.buffer_mb        imdclient frame buffer (10)
Lengths are in Å."""


def _find_config(environ) -> Path | None:
    if environ.get("STREAMRUN_CONFIG"):
        return Path(environ["STREAMRUN_CONFIG"])
    if environ.get("WEST_SIM_ROOT"):
        return Path(environ["WEST_SIM_ROOT"]) / "west.cfg"
    return None


def _say(message):
    click.echo(f"streamrun: {message}", err=True)


def _run(config_path, overrides, output, quiet, workdir=None):
    from .config import load
    from .segment import run_segment

    if workdir:
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        overrides = [*overrides, f"engine.workdir={workdir}"]
    if output:
        overrides = [*overrides, f"output={Path(output).resolve()}"]
    config = load(config_path, overrides)
    bar = None
    show_bar = not quiet and sys.stderr.isatty()

    def progress(done, total):
        nonlocal bar
        if not show_bar:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="frames", file=sys.stderr,
                                    show_pos=True, show_eta=True)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        result = run_segment(config, log=_say, progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if not quiet:
        _say(result.summary())
    return result


def _guarded(func, *args):
    """Run ``func``; turn streamrun errors into one stderr line and an exit code."""
    try:
        func(*args)
    except StreamrunError as e:
        _say(f"error: {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _say("error: interrupted")
        sys.exit(130)
    except Exception:
        _say("internal error (please report it with the lines below):")
        traceback.print_exc()
        sys.exit(1)


@click.group(invoke_without_command=True, context_settings={"help_option_names":
                                                            ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamrun")
@click.pass_context
def main(ctx):
    """Run an MD segment and compute its WESTPA progress coordinate from the
    engine's IMD stream, in one process.

    With no command and WESTPA's environment (WEST_CURRENT_SEG_ID set), runs that
    segment with the config from $STREAMRUN_CONFIG or the streamrun: section of
    $WEST_SIM_ROOT/west.cfg.
    """
    if ctx.invoked_subcommand is not None:
        return
    env = os.environ
    if env.get("WEST_CURRENT_SEG_ID"):
        config = _find_config(env)
        _guarded(_run, config, [], None, True)
        return
    click.echo(ctx.get_help())
    ctx.exit(2)


@main.command(epilog=CONFIG_HELP)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config or west.cfg with a streamrun: section "
                   "[default: $STREAMRUN_CONFIG, else $WEST_SIM_ROOT/west.cfg].")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="pcoord file to write (overrides 'output').")
@click.option("-w", "--workdir", type=click.Path(file_okay=False),
              help="Folder to run the segment in (created if missing; overrides "
                   "'engine.workdir'). Output and log paths are relative to it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set engine.nsteps=1000. Repeatable.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def run(config_path, output, workdir, overrides, quiet):
    """Run one segment: start the engine, stream it, write the pcoord file.

    The pcoord file has one row for the start structure, then one row per streamed
    frame (engine.nsteps / engine.frame_interval of them). Exit code 0 only when
    the engine exited 0 and every row was written; 2 for a config error.
    """
    path = Path(config_path) if config_path else _find_config(os.environ)
    if path is None and not overrides:
        raise click.UsageError("no config: pass --config FILE or set STREAMRUN_CONFIG")
    _guarded(_run, path, list(overrides), output, quiet, workdir)
