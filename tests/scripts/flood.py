"""Prints argv[1] numbered lines as fast as it can, then `done`."""

import os
import sys

count = int(sys.argv[1])
chunk = 1000
for start in range(0, count, chunk):
    block = "".join(f"line {i} {'x' * 20}\n" for i in range(start, min(start + chunk, count)))
    os.write(1, block.encode())
os.write(1, b"done\n")
