"""Directories that hold the hall's data: private to the user who runs the console.

The data directory holds the embedded server, the gateway's queue (every
acknowledged position of every terminal) and the audit anchor; other users
of the machine have no business listing or reading any of it.  ``mkdir``
with its default mode gives ``0755`` under the usual umask, and
``parents=True`` gives the parents that mode whatever ``mode`` says, so
every directory created here is created ``0700`` one level at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o700


def private_dir(path: Path | str) -> Path:
    """``path`` as a directory, every level created here made ``0700``.

    Directories that already exist are left as they are (a data directory an
    administrator placed deliberately keeps its mode); raises ``OSError`` like
    ``mkdir`` when it cannot be made.
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # made by someone else a moment ago: theirs to set
        os.chmod(directory, PRIVATE)  # mkdir's mode passes through the umask
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))
    return path
