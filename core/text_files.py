"""Reading and writing the user's files byte for byte: line endings as they are (CRLF stays CRLF), a BOM kept,
bytes that are not UTF-8 carried through as surrogates. Universal newlines would turn a one-line edit of a
Windows file into a commit that rewrites every line."""

from __future__ import annotations

from pathlib import Path


def read_exact(path: Path) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return handle.read()


def write_exact(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        handle.write(text)


BOM = "\ufeff"


class Layout:
    """A text's BOM and line endings, taken off to edit it with `\\n` lines and put back afterwards. Line endings
    are converted only when every line ends in CRLF; a file that mixes them is edited as it is."""

    def __init__(self, text: str) -> None:
        self.bom = text.startswith(BOM)
        body = text[1:] if self.bom else text
        self.crlf = "\r\n" in body and body.count("\n") == body.count("\r\n")

    def plain(self, text: str) -> str:
        """`text` (this file's, or an edit's) without the BOM and with `\\n` line endings where the file has CRLF."""
        text = text.removeprefix(BOM)
        return text.replace("\r\n", "\n") if self.crlf else text

    def restore(self, text: str) -> str:
        text = text.replace("\n", "\r\n") if self.crlf else text
        return BOM + text if self.bom else text
