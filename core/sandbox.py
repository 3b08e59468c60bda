"""The sandbox the training and the guard run in (`sandbox: on`): a bubblewrap command line around the command.

Inside: the whole filesystem read-only, writable only in the run's own tree, its output folder and a private
/tmp (a virtual environment or a program the command uses from /tmp stays readable); the repository's `.git`,
the session's files, the referee files and the home secrets replaced by empty ones; no network (except the
`sandbox_allow_net` ports, relayed by core/sandbox_net.py); its own user, PID, IPC and network namespaces with
no capabilities, so no ancestor's /proc/<pid>/environ is visible and every process it leaves ends with it; the
GPUs passed through; the environment the run gets without a sandbox.
The verify command (the referee) runs outside it. docs/RELIABILITY.md has the threat model.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_FILE, RESULTS_FILE, RUN_LOG, STATE_DIR, SessionConfig
from .errors import ConfigError

# What a home holds that a training has no business reading: keys, tokens, keyrings, agents' settings.
HOME_SECRETS = (
    ".ssh",
    ".aws",
    ".azure",
    ".netrc",
    ".config",
    ".gnupg",
    ".docker",
    ".kube",
    ".git-credentials",
    ".pypirc",
    ".local/share/keyrings",
    ".password-store",
)
_SESSION_FILES = (".git", CONFIG_FILE, RESULTS_FILE, RUN_LOG, STATE_DIR)
# Device nodes CUDA and ROCm open (/dev/nvidia* includes nvidia-caps and nvidia-uvm); each is passed through
# only where it exists.
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri", "/dev/kfd")
# /run holds the user's sockets (keyring, ssh-agent, D-Bus, Docker); only the GPU daemons' are kept.
_RUN_KEPT = ("/run/nvidia-persistenced", "/run/nvidia-fabricmanager")
NET_DIR = "/run/autoresearch-net"
_INSTALL = "install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap, pacman -S bubblewrap)"

# Its own user (no capabilities, even as root: no undoing the mounts), PID, IPC, network and UTS namespaces.
_NAMESPACES = (
    "--unshare-user",
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--cap-drop",
    "ALL",
    "--die-with-parent",
    "--new-session",
)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def unavailable_reason() -> str | None:
    """Why the sandbox cannot run here, as one sentence with what to do; None when it can."""
    if not sys.platform.startswith("linux"):
        return (
            f"The sandbox needs Linux namespaces, which {sys.platform} lacks; set sandbox off "
            "(autoresearch setup without --sandbox), or run on Linux."
        )
    bwrap = bwrap_path()
    if bwrap is None:
        return f"The sandbox needs bubblewrap, which is not installed; {_INSTALL}, or set sandbox off."
    probe = [bwrap, *_NAMESPACES, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({bwrap}) could not start ({exc}); reinstall it, or set sandbox off."
    if done.returncode != 0:
        why = " ".join(done.stderr.split())[:160] or f"exit {done.returncode}"
        return (
            f"bubblewrap cannot create namespaces here ({why}); enable unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces above 0), or set sandbox off."
        )
    return None


_SCRATCH = (Path("/tmp"), Path("/run"))
"""Replaced by empty folders inside the sandbox."""


def _programs_under_scratch(command: str, env: Mapping[str, str]) -> list[Path]:
    """Folders the run's programs need that lie under /tmp or /run (a virtual environment made there, the folder
    of a program the command names by its path or finds on PATH): bound read-only again, as nothing else there is.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    named = [Path(w) for w in words if w.startswith("/")]
    named += [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p.startswith("/")]
    named += [Path(v) for v in (env.get("VIRTUAL_ENV", ""),) if v.startswith("/")]
    found: dict[Path, None] = {}
    for path in named:
        if not any(scratch in path.parents for scratch in _SCRATCH) or not path.exists():
            continue
        folder = path if path.is_dir() else path.parent
        venv = next((p for p in (folder, *folder.parents) if (p / "pyvenv.cfg").is_file()), None)
        kept = venv or folder
        if kept not in _SCRATCH:
            found[kept] = None
    return list(found)


def _hide(path: Path) -> list[str]:
    """Arguments that put an empty folder or file over `path` (only where it exists)."""
    if path.is_dir() and not path.is_symlink():
        return ["--tmpfs", str(path), "--remount-ro", str(path)]
    if path.exists() or path.is_symlink():
        return ["--ro-bind", "/dev/null", str(path)]
    return []


@dataclass(frozen=True)
class Sandbox:
    """Turns a command run in a tree of the session at `root` into the bubblewrap command line that confines it."""

    bwrap: str
    root: Path
    referee_files: tuple[str, ...] = ()
    allow_net: tuple[str, ...] = ()
    home: Path | None = None
    devices: tuple[str, ...] = GPU_DEVICES

    def wrap(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> list[str]:
        """`argv`, run in `cwd` with `env`, inside the sandbox."""
        cwd = Path(cwd).resolve()
        root = self.root.resolve()
        args = [self.bwrap, *_NAMESPACES, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        args += ["--tmpfs", "/dev/shm"]
        args += ["--tmpfs", "/tmp", "--tmpfs", "/run"]
        for kept in _RUN_KEPT:
            args += ["--ro-bind-try", kept, kept]
        programs = argv[-1] if argv else ""
        if self.allow_net:  # the relay inside is this tool's own Python and file, wherever it is installed
            programs += f" {sys.executable} {Path(__file__).resolve().with_name('sandbox_net.py')}"
        for folder in _programs_under_scratch(programs, env):
            args += ["--ro-bind", str(folder), str(folder)]
        for device in sorted({found for pattern in self.devices for found in glob.glob(pattern)}):
            args += ["--dev-bind", device, device]
        args += self._home_hidden(env)
        # The repository read-only again (it may lie under /tmp or /run), then the run's own tree and output
        # folder writable, then the session's files out of reach. A worker's tree lies under .autoresearch/:
        # that folder is emptied first and the tree bound into it.
        args += ["--ro-bind", str(root), str(root)]
        late: list[str] = []
        for name in _SESSION_FILES:
            path = root / name
            if path in cwd.parents and path.is_dir():
                args += ["--tmpfs", str(path)]
            else:
                late += _hide(path)
        args += ["--bind", str(cwd), str(cwd)]
        output = env.get("AUTORESEARCH_OUTPUT_DIR")
        if output and Path(output).is_dir():
            args += ["--bind", str(Path(output).resolve()), str(Path(output).resolve())]
        args += late
        if cwd != root:
            args += _hide(cwd / ".git")
        for tree in dict.fromkeys((root, cwd)):
            for name in self.referee_files:
                args += _hide(tree / name)
        args += ["--chdir", str(cwd)]
        if self.allow_net:
            from .sandbox_net import inside_command, relay_dir

            sockets = relay_dir(self.allow_net)
            args += ["--ro-bind", str(sockets), NET_DIR, "--", *inside_command(self.allow_net, NET_DIR, argv)]
            return args
        return [*args, "--", *argv]

    def _home_hidden(self, env: Mapping[str, str]) -> list[str]:
        args: list[str] = []
        for home in dict.fromkeys(h for h in (self.home, Path(env.get("HOME") or "~").expanduser()) if h):
            for name in HOME_SECRETS:
                args += _hide(home / name)
        return args


def check_sandbox(config: SessionConfig) -> None:
    """Raise a ConfigError (one sentence) when `sandbox` is on but cannot run here."""
    if not config.sandbox or config.executor != "local":
        return
    reason = unavailable_reason()
    if reason:
        raise ConfigError(reason)


def sandbox_for(config: SessionConfig, root: Path) -> Sandbox | None:
    """The session's sandbox, or None when `sandbox` is off (or the runs go to a cluster, docs/RAY.md);
    a ConfigError (one sentence) when it cannot run here."""
    if not config.sandbox or config.executor != "local":
        return None
    check_sandbox(config)
    return Sandbox(
        bwrap_path() or "bwrap",
        Path(root),
        referee_files=tuple(config.referee_files),
        allow_net=tuple(config.sandbox_allow_net),
        home=Path(os.path.expanduser("~")),
    )
