"""Settings of one console process: where the data lives and which database.

Precedence is command line, then environment, then defaults, so a wall
display and a workstation can share one install and differ only in flags.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Shanghai"


def default_data_dir() -> Path:
    """``GRID_DATA_DIR`` or the user's data directory for this application."""
    env = os.environ.get("GRID_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("grid-console", appauthor=False))


def hall_timezone() -> ZoneInfo:
    """The dispatch hall's time zone: case numbers and displayed times use it."""
    return ZoneInfo(os.environ.get("GRID_TZ", DEFAULT_TZ))


def workstation_name() -> str:
    """How this machine appears in the case log's 'from where' column."""
    return os.environ.get("GRID_WORKSTATION") or socket.gethostname()


@dataclass
class Settings:
    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    lang: str = "zh"
    simulate: bool = True  # run the simulator behind the window on the embedded demo

    @classmethod
    def from_env(
        cls, database_url: str | None = None, data_dir: str | None = None, lang: str | None = None
    ) -> Settings:
        return cls(
            database_url=database_url or os.environ.get("GRID_DATABASE_URL") or None,
            data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
            lang=lang or os.environ.get("GRID_LANG", "zh"),
        )
