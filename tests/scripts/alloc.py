"""Holds argv[1] MiB of touched memory for argv[2] seconds."""

import sys
import time

block = b"\x01" * (int(sys.argv[1]) * 1024 * 1024)
print(f"holding {len(block)} bytes", flush=True)
time.sleep(float(sys.argv[2]))
