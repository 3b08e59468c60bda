"""A training that ignores SIGTERM and leaves children that do too: one plain, one in its own session,
one double-forked into its own session. Every process appends its pid to argv[1]."""

import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)


def note_pid() -> None:
    with open(sys.argv[1], "a") as fh:
        fh.write(f"{os.getpid()}\n")


def linger() -> None:
    while True:
        time.sleep(1)


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
    os._exit(0)
print("training", flush=True)
linger()
