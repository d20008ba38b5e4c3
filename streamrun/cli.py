"""The ``streamrun`` command line.

``streamrun run -c CONFIG`` runs one segment. Started with no arguments (as WESTPA
starts a propagator), streamrun reads its config from ``$STREAMRUN_CONFIG`` or the
``streamrun:`` section of ``$WEST_SIM_ROOT/west.cfg`` and runs the segment WESTPA
describes in ``WEST_*`` variables.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import ConfigError, StreamrunError

def config_help() -> str:
    """The config reference for ``--help``, from the key tables in
    :mod:`streamrun.config` and the coordinate registry (one source each)."""
    import textwrap

    from . import config, pcoords

    def block(prefix, keys):
        out = []
        for key, meaning in keys.items():
            name = f"{prefix}{key}"
            text = textwrap.wrap(meaning, 54)
            out.append(f"  {name:<22}  {text[0]}")
            out += [f"  {'':<22}  {t}" for t in text[1:]]
        return out

    lines = ["\b", "Config keys (YAML; in west.cfg under 'streamrun:'; paths relative "
             "to the file):"]
    lines += block("", config.TOP_KEYS)
    lines += block("engine.", config.ENGINE_KEYS)
    lines += block("stream.", config.STREAM_KEYS)
    lines += block("files.<name>.", config.FILES_KEYS)
    lines += block("trajectory.", config.TRAJECTORY_KEYS)
    lines += block("get_pcoord.", config.GET_PCOORD_KEYS)
    lines += ["", "\b", "Coordinates (pcoord: and aux: lists; each item has type: and "
              "optional name:):"]
    lines += pcoords.reference().splitlines()
    lines += ["", "Units: Å, ps, degrees (angles), atoms (count), fraction (contacts)."]
    return "\n".join(lines)


class _ConfigHelpCommand(click.Command):
    """A command whose epilog (the config reference) is built only for --help."""

    def format_epilog(self, ctx, formatter):
        self.epilog = config_help()
        super().format_epilog(ctx, formatter)


def _find_config(environ) -> Path | None:
    if environ.get("STREAMRUN_CONFIG"):
        return Path(environ["STREAMRUN_CONFIG"])
    if environ.get("WEST_SIM_ROOT"):
        return Path(environ["WEST_SIM_ROOT"]) / "west.cfg"
    return None


def _say(message):
    click.echo(f"streamrun: {message}", err=True)


def _load(config_path, overrides, output=None, workdir=None, mode="segment",
          environ=None):
    from .config import load, make_workdir

    if workdir:
        workdir = make_workdir(workdir)
        overrides = [*overrides, f"engine.workdir={workdir}"]
    if output:
        overrides = [*overrides, f"output={Path(output).resolve()}"]
    if config_path is None and not overrides:
        raise ConfigError("no config: pass --config FILE, set STREAMRUN_CONFIG, or run "
                          "under WESTPA (WEST_SIM_ROOT/west.cfg with a streamrun: "
                          "section)")
    return load(config_path, overrides, mode=mode, environ=environ)


def _run(config_path, overrides, output=None, quiet=False, workdir=None,
         dry_run=False, warm=False, stand_ins=False, signals=None):
    from .segment import describe, process_age, run_segment

    if dry_run:
        environ = _dry_run_environ(config_path) if stand_ins else None
        config = _load(config_path, overrides, output, workdir, environ=environ)
        click.echo(describe(config))
        return None
    config = _load(config_path, overrides, output, workdir)
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
        # since this process began: a warm run's since its fork from the worker
        result = run_segment(config, log=_say, progress=progress,
                             started=process_age(), signals=signals)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    # complete: a signal from here on changes nothing (see _guarded)
    with signals.deferred() if signals else contextlib.nullcontext():
        if not quiet:
            _say(result.summary())
    return result


def _dry_run_environ(config_path):
    """``os.environ`` with stand-ins for the ``WEST_*`` variables a segment needs
    and WESTPA did not set (a new trajectory from the first basis state), each
    named on stderr, so that ``segment --dry-run`` works outside WESTPA."""
    import tempfile

    from . import check

    environ = dict(os.environ)
    if environ.get("WEST_CURRENT_SEG_ID"):
        return environ  # inside WESTPA (or a runseg.sh): the real values
    sim_root = Path(environ["WEST_SIM_ROOT"]) if environ.get("WEST_SIM_ROOT") \
        else None
    west, parent = None, None
    if sim_root is None and config_path is not None:
        sim_root = Path(config_path).resolve().parent
    if sim_root is not None and (sim_root / "west.cfg").is_file():
        try:
            where = check.locate(sim_root / "west.cfg", environ)
            west = where.west
            states = check._basis_states(where, sim_root, None, check.Report())
            parent = states[0].data_ref if states else None
        except StreamrunError:
            pass
    scratch = Path(tempfile.mkdtemp(prefix="streamrun-dry-run-"))
    stood = check.segment_environ(environ, sim_root, scratch, parent, west)
    added = sorted(k for k in stood if k.startswith("WEST_") and k not in environ)
    _say(f"dry run outside WESTPA: stand-ins for {', '.join(added)} (a new "
         f"trajectory of iteration 1; returns in {scratch})")
    return stood


def _point(config_path, overrides, output=None, quiet=False, signals=None):
    from .segment import compute_start_point

    config = _load(config_path, overrides, output, mode="pcoord")
    row = compute_start_point(config)
    if not quiet:
        _say(f"pcoord of {config.start}: {' '.join(f'{v:.6g}' for v in row)} -> "
             f"{config.output}")


def _guarded(func, *args, warm=False):
    """Run ``func``; turn streamrun errors into one stderr line and an exit code.

    The process exits with that code; with ``warm`` (streamrun runs inside a WESTPA
    worker, :mod:`streamrun.propagator`) the code is returned instead.

    Terminating signals (:mod:`streamrun.signals`) are taken over for the whole
    command and given to ``func`` as ``signals``: one received before a segment is
    complete is its error (exit code 128 + the signal's number); after that (its
    pcoord file written) it changes nothing, and the process exits as it was about
    to. On the warm path the worker then gets the signal again, with its own
    handlers back, once the engine is stopped and the seg log written.
    """
    from .signals import SignalGuard

    guard = SignalGuard()
    guard.install()
    code, result = 0, None
    try:
        with guard.interruptible():
            result = func(*args, signals=guard)
    except StreamrunError as e:
        _say(f"error: {e}")
        code = e.exit_code
    except KeyboardInterrupt:
        _say("error: interrupted")
        code = 130
    except Exception:
        _say("internal error (please report it with the lines below):")
        traceback.print_exc()
        code = 1
    if warm:
        guard.uninstall()
        sys.stdout.flush()
        sys.stderr.flush()
        guard.redeliver()
        return code
    # the guard stays: a signal during the interpreter's exit changes nothing
    if code:
        sys.exit(code)
    if result is not None:
        # A finished segment: every file is written and the engine tree stopped.
        # Skip the interpreter's teardown of MDAnalysis/scipy (~0.1 s per segment);
        # note that plugins' atexit handlers do not run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


CONFIG_OPTION = click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False),
    help="YAML config or west.cfg with a streamrun: section "
         "[default: $STREAMRUN_CONFIG, else $WEST_SIM_ROOT/west.cfg].")
SET_OPTION = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a config value, e.g. --set engine.nsteps=1000. Repeatable.")
OUTPUT_OPTION = click.option("-o", "--output", type=click.Path(dir_okay=False),
                             help="pcoord file to write (overrides 'output').")
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True,
                            help="No progress bar or summary.")
DRY_RUN_OPTION = click.option("--dry-run", is_flag=True,
                              help="Print the resolved engine command, files, "
                                   "coordinates and outputs; run nothing.")


def _config_path(config_path):
    return Path(config_path) if config_path else _find_config(os.environ)


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamrun")
@click.pass_context
def main(ctx):
    """Run an MD segment and compute its WESTPA progress coordinate from the
    engine's IMD stream, in one process. Lengths are in Å.

    \b
    With no command, as WESTPA starts a propagator:
      WEST_CURRENT_SEG_ID set   -> run that segment     (= streamrun segment)
      WEST_STRUCT_DATA_REF set  -> get_pcoord one point (= streamrun pcoord)
    The config is $STREAMRUN_CONFIG, else the streamrun: section of
    $WEST_SIM_ROOT/west.cfg.
    """
    if ctx.invoked_subcommand is not None:
        return
    if westpa_job() is None:
        click.echo(ctx.get_help())
        ctx.exit(2)


def westpa_job(warm=False) -> int | None:
    """Do what WESTPA asks of its propagator, as the ``WEST_*`` variables of
    ``os.environ`` say: run a segment, or get_pcoord one structure.

    Exits with the exit code, or returns it with ``warm``; None when the
    environment is not one of WESTPA's jobs.
    """
    from . import westpa

    if westpa.in_segment(os.environ):
        return _guarded(functools.partial(_run, warm=warm), _find_config(os.environ),
                        [], warm=warm)
    if westpa.in_get_pcoord(os.environ):
        return _guarded(_point, _find_config(os.environ), [], warm=warm)
    if os.environ.get("WEST_ISTATE_DATA_REF") or os.environ.get("WEST_BSTATE_DATA_REF"):
        _say("error: started as WESTPA's gen_istate, which streamrun does not do; set "
             "'gen_istates: false' in west.cfg (west.propagation) or use your own "
             "gen_istate script")
        if warm:
            return 2
        sys.exit(2)
    return None


@main.command(cls=_ConfigHelpCommand)
@CONFIG_OPTION
@OUTPUT_OPTION
@click.option("-w", "--workdir", type=click.Path(file_okay=False),
              help="Folder to run the segment in (created if missing; overrides "
                   "'engine.workdir'). Output and log paths are relative to it.")
@SET_OPTION
@QUIET_OPTION
@DRY_RUN_OPTION
def run(config_path, output, workdir, overrides, quiet, dry_run):
    """Run one segment: start the engine, stream it, write the pcoord file.

    The pcoord file has one row for the start structure, then one row per streamed
    frame (engine.nsteps / engine.frame_interval of them). Exit code 0 only when
    the engine exited 0 and every row was written; 2 for a config error.
    """
    _guarded(_run, _config_path(config_path), list(overrides), output, quiet, workdir,
             dry_run)


@main.command(cls=_ConfigHelpCommand)
@CONFIG_OPTION
@SET_OPTION
@DRY_RUN_OPTION
def segment(config_path, overrides, dry_run):
    """Run the WESTPA segment described by the WEST_* variables, in the current
    folder (for a runseg.sh wrapper; the same as starting streamrun with no
    arguments under WESTPA)."""
    _guarded(_run, _config_path(config_path), list(overrides), None, False, None,
             dry_run, False, True)


@main.command(name="check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--bstate-file", type=click.Path(dir_okay=False),
              help="Basis-state file, as given to w_init [default: "
                   "bstates/bstates.txt next to west.cfg].")
@click.option("--results", type=click.Path(dir_okay=False), metavar="WEST_H5",
              help="Check what w_init/w_run left instead (they exit 0 after "
                   "failures): NaN pcoords and failed segments in WEST_H5.")
@click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False),
              help="With --results: w_init/w_run output to scan for errors "
                   "(repeatable).")
@SET_OPTION
def check_command(file, bstate_file, results, logs, overrides):
    """Check a simulation without running MD: west.cfg, the streamrun config,
    files, engine input, selections, plugins, and each basis state's pcoord.

    FILE is a west.cfg or a streamrun YAML [default: $STREAMRUN_CONFIG, else
    $WEST_SIM_ROOT/west.cfg, else west.cfg here]. WEST_* variables get stand-in
    values (a new trajectory of iteration 1 from the first basis state). Prints
    what a segment would do and every problem found; exit code 1 if there is any.
    Run it before w_init: WESTPA reports a failed get_pcoord only as a NaN pcoord.
    After w_init and w_run, ``--results west.h5 --log w_run.log`` fails on what
    they report only in passing.
    """
    _guarded(_check, file, bstate_file, list(overrides), results, logs)


def _check(file, bstate_file, overrides, results=None, logs=(), signals=None):
    from .check import check, check_results

    report = (check_results(results, logs) if results else
              check(file, bstate_file=bstate_file, overrides=overrides))
    click.echo(report.text())
    if report.problems:
        sys.exit(1)


@main.command()
@CONFIG_OPTION
@SET_OPTION
@OUTPUT_OPTION
@QUIET_OPTION
def pcoord(config_path, overrides, output, quiet):
    """WESTPA get_pcoord: write the pcoord of one structure (a basis or initial
    state, $WEST_STRUCT_DATA_REF, or get_pcoord.structure) to $WEST_PCOORD_RETURN,
    with the same coordinates as the segments' row 0."""
    _guarded(_point, _config_path(config_path), list(overrides), output, quiet)
