"""An indent-aware code writer: generated source is built line by line, never by string pasting."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class CodeWriter:
    """Lines at the current indent; ``with w.block("for ...:"):`` indents its body."""

    def __init__(self, indent: str = "    "):
        self._lines: list[str] = []
        self._level = 0
        self._indent = indent

    def line(self, text: str = "") -> None:
        """One line (blank lines carry no trailing spaces)."""
        self._lines.append(self._indent * self._level + text if text else "")

    def lines(self, text: str) -> None:
        """Several lines, each at the current indent (for pasting a prepared block)."""
        for t in text.splitlines():
            self.line(t)

    def comment(self, text: str) -> None:
        for t in text.splitlines():
            self.line(f"# {t}".rstrip())

    @contextmanager
    def indented(self) -> Iterator[None]:
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """A header line ending in ':' and an indented body."""
        self.line(header)
        with self.indented():
            yield

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


__all__ = ["CodeWriter"]
