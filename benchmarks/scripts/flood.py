"""A training that prints argv[1] lines a second for argv[2] seconds, then its val_loss.

With a third argument, it first writes its start time (time.time()) to that file."""

import os
import sys
import time

LEARNING_RATE = 0.01

rate, seconds = float(sys.argv[1]), float(sys.argv[2])
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as fh:
        fh.write(f"{time.time()}\n")
tick = 0.01
began = time.monotonic()
printed = 0
while True:
    elapsed = time.monotonic() - began
    if elapsed >= seconds:
        break
    due = min(int(elapsed * rate) + int(rate * tick), int(seconds * rate))
    if due > printed:
        os.write(
            1,
            "".join(
                f"step {i} | loss: {1.0 / (1 + i % 977):.6f} | lr {LEARNING_RATE}\n" for i in range(printed, due)
            ).encode(),
        )
        printed = due
    time.sleep(tick)
os.write(1, f"lines: {printed}\nval_loss: {abs(LEARNING_RATE - 0.04) + 0.5:.6f}\n".encode())
