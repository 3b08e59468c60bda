"""Text from the model or from a training's log made safe for a terminal and for files people read.

Escape sequences (colours, cursor moves, a window title, a screen clear) are removed whole; any other
control character (NUL, BEL, backspace, C1 controls, bidirectional overrides that reorder what is shown)
becomes a visible `?`, so nothing of it can act on the terminal and nothing is silently hidden.
"""

from __future__ import annotations

import re

# ESC followed by a CSI, OSC, DCS/SOS/PM/APC string or a single-character sequence; the 8-bit CSI and OSC too.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_TAB = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """Many lines: escape sequences removed, other control characters shown as `?`; newlines and tabs kept."""
    return _CONTROL.sub("?", _ESCAPE.sub("", text.replace("\r\n", "\n")))


def safe_line(text: str) -> str:
    """One line (a description, a log line): as safe_text, with newlines and tabs made spaces."""
    text = _ESCAPE.sub("", text).replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return _CONTROL_OR_TAB.sub("?", text)


def one_line(text: str) -> str:
    """A description or a category as it is recorded: safe_line with runs of spaces made one."""
    return " ".join(safe_line(text).split())
