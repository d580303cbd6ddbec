"""Run a local desktop's program and stay alive while anything it started is alive.

    python -I subreaper.py <uid> <gid> <program> [args...]

The local_desktop provisioner starts the operator's desktop program through this, as the
leader of a session of its own. It runs as the gateway's user (root), out of the desktop's
reach, and starts the program as the desktop's own uid and gid, with no supplementary groups
and no way back to more privilege (no_new_privs: a set-user-id program such as su or sudo
gains nothing). It marks itself a child subreaper, so whatever the program
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
PR_SET_NO_NEW_PRIVS = 38


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not (argv[0].isdigit() and argv[1].isdigit()):
        print("usage: subreaper.py <uid> <gid> <program> [args...]", file=sys.stderr)
        return 2
    uid, gid, argv = int(argv[0]), int(argv[1]), argv[2:]
    if uid == 0 or gid == 0:
        print("subreaper.py: a desktop never runs as root", file=sys.stderr)
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
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                os._exit(126)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
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
