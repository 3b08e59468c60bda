"""A real Ray head on 127.0.0.1 for the tests and the benchmark: every port chosen free, logical GPUs, a short
temp dir (Ray's unix socket paths must stay under 108 characters), stopped by killing its process group (never
`ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

_PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)
_WORKER_PORTS = 40
_START_S = 180.0


@dataclass(frozen=True)
class RayHead:
    address: str  # the dashboard's http address, what JobSubmissionClient and `ray job` take
    temp_dir: Path
    process: subprocess.Popen[bytes]


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _free_range(size: int, taken: Iterable[int] = ()) -> int:
    """The first port of `size` consecutive ports that are free now and hold none of `taken` (ports already chosen
    for the head's other parts, free now only because nothing listens on them yet)."""
    avoid = set(taken)
    for _ in range(200):
        first = _free_ports(1)[0]
        if first + size >= 65535 or avoid.intersection(range(first, first + size)):
            continue
        try:
            held = []
            for port in range(first, first + size):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no range of free ports for Ray's workers")


def ray_binary() -> str:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


def _ready(url: str) -> bool:
    """The dashboard answers and the head node has registered (before that, jobs cannot be placed)."""
    try:
        with urllib.request.urlopen(f"{url}/api/v0/nodes?limit=10", timeout=5) as reply:
            nodes = json.loads(reply.read())["data"]["result"]["result"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return any(node.get("state") == "ALIVE" for node in nodes)


@contextlib.contextmanager
def ray_head(num_gpus: int = 2, num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[RayHead]:
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    first_worker = _free_range(_WORKER_PORTS, ports.values())
    args = [
        ray_binary(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        f"--num-gpus={num_gpus}",
        f"--num-cpus={num_cpus}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        f"--min-worker-port={first_worker}",
        f"--max-worker-port={first_worker + _WORKER_PORTS - 1}",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_JOB_STOP_WAIT_TIME_S": "2", **(env or {})}
    log = (temp_dir / "head.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        deadline = time.monotonic() + _START_S
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {(temp_dir / 'head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield RayHead(url, temp_dir, proc)
    finally:
        descendants = _descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_leftovers(temp_dir, descendants)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_leftovers(temp_dir: Path, descendants: list[psutil.Process]) -> None:
    """Ray's workers run in process groups of their own: end the head's descendants seen before the kill and
    whatever names our temp dir in its command line."""
    mine = [p for p in descendants if p.is_running()]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if str(temp_dir) in cmdline and proc.pid != os.getpid():
            mine.append(proc)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(mine, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
