"""Files the tool must write that the system will not let it: one sentence naming the file and the fix."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import UserError


def _shown(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def unwritable_message(root: Path, exc: OSError) -> str:
    """`exc` (a permission error, a read-only file system) as what cannot be written and how to fix it."""
    target = Path(str(exc.filename)) if exc.filename else root
    if not target.is_absolute():
        target = root / target
    while not target.exists() and target != target.parent:
        target = target.parent  # a file that could not be created: its folder is what needs fixing
    return _sentence(root, target, exc.strerror or str(exc), read_only_disk=exc.errno == errno.EROFS)


def _sentence(root: Path, target: Path, reason: str | None, read_only_disk: bool = False) -> str:
    shown = _shown(root, target)
    why = f" ({reason})" if reason else ""
    if read_only_disk:
        return f"{shown} cannot be written{why}; move the repository to a writable disk and run again."
    return (
        f"{shown} cannot be written{why}; make it writable (chmod u+w {shown}, and chattr -i {shown} "
        "if it is immutable) and run again."
    )


def require_writable(root: Path, path: Path) -> None:
    """Refuse, before anything is changed, an editable file the tool could not replace."""
    for target in (path, path.parent):
        if not os.access(target, os.W_OK):
            raise UserError(_sentence(root, target, None))
