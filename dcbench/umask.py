"""Files dcbench creates get the permissions the user's umask asks for.

``tempfile.mkstemp``/``mkdtemp`` (used for atomic writes) create 0600 files and 0700 directories
whatever the umask, so a results directory shared with a group would be unreadable to it.
"""
from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_created(path: Path | str, directory: bool = False) -> None:
    """Give ``path`` the mode ``open()``/``mkdir()`` would have given it: 0666 (0777) minus the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())
