"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class DcbenchError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting non-zero."""


def one_line(text: str) -> str:
    """``text`` on one line: a line break or other control character (a file name may hold one)
    is shown escaped, so an error stays the one line the CLI promises."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def first_line(exc: BaseException, empty: str = "", limit: int | None = None) -> str:
    """An exception's message as one line: its first non-blank line (``empty`` when it has none),
    cut to ``limit`` characters. Reasons and errors quote exceptions through this."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else empty
    return line[:limit] if limit is not None else line
