"""Ignores SIGTERM and starts children that do too: one plain, one in its own session, one double-forked.

Every process appends its pid to the file given as argv[1]; the parent then prints `ready`.
"""

import os
import signal
import sys
import time

PIDS = sys.argv[1]


def note_pid() -> None:
    fd = os.open(PIDS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)


def linger() -> None:
    while True:
        time.sleep(1)


signal.signal(signal.SIGTERM, signal.SIG_IGN)
note_pid()
if os.fork() == 0:
    note_pid()
    linger()
if os.fork() == 0:
    os.setsid()
    note_pid()
    linger()
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        note_pid()
        linger()
    note_pid()
    os._exit(0)
time.sleep(0.2)
print("ready", flush=True)
linger()
