"""`autoresearch serve`: the watcher app in a browser through textual-serve, one watcher per open page."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shlex
import sys
from pathlib import Path

from .watching import TOKEN_ENV


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(root: Path) -> str:
    return shlex.join([sys.executable, "-m", "autoresearch.core.cli", "-C", str(root), "watch", "--by", "the browser"])


def serve(root: Path, host: str, port: int) -> int:
    """Serve until interrupted. Bound beyond this machine, pages only view until the printed token is entered."""
    from textual_serve.server import Server

    if loopback(host):
        os.environ.pop(TOKEN_ENV, None)
        print(f"Open http://{host}:{port} in a browser on this machine; from elsewhere, tunnel to it:", flush=True)
    else:
        token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(12)
        os.environ[TOKEN_ENV] = token  # the served watchers inherit it
        print(
            f"Serving on {host}:{port}, which other machines can reach: pages only view the run until its token "
            f"is entered (press i in the page, then type {token}). Safer: serve on 127.0.0.1 and tunnel to it:",
            flush=True,
        )
    print(f"  ssh -N -L {port}:127.0.0.1:{port} {os.environ.get('USER', 'you')}@THIS-HOST", flush=True)
    Server(serve_command(root), host=host, port=port, title="autoresearch").serve()
    return 0
