"""User-facing errors: one line that names the problem and the fix."""
from __future__ import annotations


class DcbenchError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting non-zero."""
