"""Run a local desktop's program and stay alive while anything it started is alive.

    python -I subreaper.py <program> [args...]

The local_desktop provisioner starts the operator's desktop program through this, as the
leader of a session of its own. It marks itself a child subreaper, so whatever the program
starts and leaves behind is re-parented here instead of to init, and it waits for all of them
before it exits. So while any process the program started is alive, so is this one, with the
pid and start time the provisioner noted, and every such process is its descendant: stopping the
desktop ends all of them, even one that scrubbed its environment (and so lost the desktop's
mark) and left for a session of its own after the program itself exited.

It ignores SIGTERM (its program does not): stopping a desktop sends SIGTERM, then SIGKILL to
whatever is left, and the leader must still be there for the second round to find the session.
Standard library only, run with -I: it imports nothing from the project or the environment.
"""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: subreaper.py <program> [args...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    program = os.fork()
    if program == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)  # noqa: S606 - the operator's desktop command, as argv
        finally:
            os._exit(127)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:  # nothing left: the program and all it started have exited
            return status
        if pid == program:
            status = os.waitstatus_to_exitcode(wait_status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
