"""A stand-in for srun, for tests: it starts its command *outside* its own process
tree, as srun's tasks are children of slurmstepd and not of srun, and stays until
the command ends (forwarding SIGTERM/SIGINT to it, exiting with its code), as srun
does. Usage: python fake_srun.py COMMAND ARGS...
"""

import os
import signal
import sys
import time

task_r, task_w = os.pipe()   # the task's process-group id
code_r, code_w = os.pipe()   # its exit code, written by the shell that runs it
os.set_inheritable(code_w, True)

middle = os.fork()
if middle == 0:
    os.setsid()
    task = os.fork()
    if task == 0:  # re-parented to init once `middle` exits: not our descendant
        os.close(code_r)
        os.execvp("sh", ["sh", "-c", '"$@"; echo $? >&' + str(code_w), "sh",
                         *sys.argv[1:]])
    os.write(task_w, str(task).encode())
    os._exit(0)
os.waitpid(middle, 0)
os.close(code_w)
os.close(task_w)
pgid = int(os.read(task_r, 32))


def forward(signum, _frame):
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
with os.fdopen(code_r) as codes:
    code = codes.read().strip()
while True:  # the shell exits right after writing the code
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.05)
sys.exit(int(code) if code.isdigit() else 1)
