"""The sandbox's network allow-list (`sandbox_allow_net`): each allowed "PORT" or "HOST:PORT" is relayed.

The sandbox has no network. For each allowed address the tool listens on a Unix socket in a private folder
(bound read-only into the sandbox) and connects each client there to HOST:PORT (127.0.0.1 when no host is
given). Inside, this file runs as a script in front of the command: it listens on 127.0.0.1:PORT and joins
each connection to its socket, so the training reaches exactly those addresses at 127.0.0.1:PORT and nothing
else. Standard library only: inside, it runs as a plain script.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence

_relays: dict[tuple[str, ...], str] = {}
_relays_lock = threading.Lock()


def parse_address(entry: str) -> tuple[str, int]:
    """("HOST", PORT) of an allow-list entry "PORT" or "HOST:PORT"; ValueError when it is neither."""
    host, _, port = entry.rpartition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(entry)
    return host.strip("[]") or "127.0.0.1", number


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _join(client: socket.socket, connect: Callable[[], socket.socket]) -> None:
    try:
        upstream = connect()
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_join, args=(client, connect), daemon=True).start()


def _start(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    threading.Thread(target=_serve, args=(listener, connect), daemon=True).start()


def relay_dir(allow_net: Sequence[str]) -> str:
    """The folder of Unix sockets, one per allowed address, served by this process until it exits."""
    key = tuple(allow_net)
    with _relays_lock:
        if key in _relays:
            return _relays[key]
        folder = tempfile.mkdtemp(prefix="autoresearch-net-")
        for entry in key:
            host, port = parse_address(entry)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(os.path.join(folder, f"{port}.sock"))
            listener.listen(64)
            _start(listener, functools.partial(socket.create_connection, (host, port), 30))
        _relays[key] = folder
        return folder


def inside_command(allow_net: Sequence[str], folder: str, argv: Sequence[str]) -> list[str]:
    ports = [str(parse_address(entry)[1]) for entry in allow_net]
    return [sys.executable, "-S", os.path.abspath(__file__), folder, *ports, "--", *argv]


def _unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def main(args: list[str]) -> int:
    """Inside the sandbox: listen on 127.0.0.1:PORT for each port, run the command, exit with its status."""
    split = args.index("--")
    folder, ports, command = args[0], args[1:split], args[split + 1 :]
    for port in ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(64)
        _start(listener, functools.partial(_unix, os.path.join(folder, f"{port}.sock")))
    child = subprocess.Popen(command)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
