"""The warm path: WESTPA's executable propagator, with streamrun run inside the worker.

In west.cfg::

    west:
      propagation:
        propagator: streamrun.propagator.StreamrunPropagator

and everything else as with ``executable: streamrun`` (the same ``executable:``
section and ``streamrun:`` section). WESTPA's own :class:`ExecutablePropagator` still
builds each segment's environment (``WEST_*``, the random numbers, data refs), sets up
the return files and reads them back into west.h5. Only the child is different: where
the configured executable is ``streamrun``, the job runs in the worker process
itself instead of a new one, so Python, MDAnalysis, scipy and imdclient are imported
once per worker, not once per segment. Per segment only the engine starts. Any other
executable (a runseg.sh, gen_istate scripts) runs as a child process as usual.

Inside the worker, a segment sees what a ``streamrun`` process would: its
environment (``os.environ`` is swapped for the segment's and put back), its working
folder, and its output in the seg log (``sys.stdout``/``sys.stderr``); its exit code
goes back to WESTPA, which marks a segment with a non-zero code failed while the
worker goes on. Signals, the parent-death check and the engine tree are handled by
the same code as in a ``streamrun`` process (the worker runs tasks in its main
thread under WESTPA's processes and zmq work managers).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from pathlib import Path
from types import SimpleNamespace

from westpa.core.propagators.executable import ExecutablePropagator


def is_streamrun(executable) -> bool:
    """True for the executable ``streamrun`` (a name or a path to it)."""
    return Path(str(executable)).name == "streamrun"


class StreamrunPropagator(ExecutablePropagator):
    """:class:`ExecutablePropagator` that runs ``executable: streamrun`` jobs in the
    worker process (see the module docstring)."""

    def exec_child(self, executable, environ=None, stdin=None, stdout=None,
                   stderr=None, cwd=None):
        if not is_streamrun(executable):
            return super().exec_child(executable, environ, stdin, stdout, stderr, cwd)
        # the environment a child would get (ExecutablePropagator.exec_child)
        child_environ = dict(os.environ)
        child_environ.update(self.addtl_child_environ)
        child_environ.update(self.random_val_env_vars())
        child_environ.update(environ or {})
        return run_in_worker(child_environ, cwd, stdout, stderr)


def run_in_worker(environ, cwd=None, stdout=None, stderr=None):
    """Run one WESTPA job of streamrun in this process, as ``streamrun`` (no
    arguments) would in a child: returns (exit code, resource usage) as
    ``ExecutablePropagator.exec_child`` does (``ru_utime``/``ru_stime``: CPU seconds
    of this job, streamrun's and its engine's)."""
    from . import cli

    before = _cpu()
    saved_environ, saved_cwd = dict(os.environ), os.getcwd()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(stdout, "a")) if stdout else sys.stdout
        err = out if stderr == "stdout" else (
            stack.enter_context(open(stderr, "a")) if stderr else sys.stderr)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            os.environ.clear()
            os.environ.update(environ)
            if cwd:
                os.chdir(cwd)
            cli._say(f"running in WESTPA worker pid {os.getpid()} (warm path: "
                     f"streamrun.propagator.StreamrunPropagator)")
            code = cli.westpa_job(warm=True)
            if code is None:
                cli._say("error: started by WESTPA without WEST_CURRENT_SEG_ID or "
                         "WEST_STRUCT_DATA_REF; nothing to do")
                code = 2
        finally:
            os.environ.clear()
            os.environ.update(saved_environ)
            os.chdir(saved_cwd)
            out.flush()
            err.flush()
    after = _cpu()
    return code, SimpleNamespace(ru_utime=after[0] - before[0],
                                 ru_stime=after[1] - before[1])


def _cpu():
    """User and system CPU seconds of this process and its reaped children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + children.ru_utime, me.ru_stime + children.ru_stime
