"""Settings of one console process: where the data lives and which database.

Precedence is command line, then environment, then defaults, so a wall
display and a workstation can share one install and differ only in flags.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    """``GRID_DATA_DIR`` or the user's data directory for this application."""
    env = os.environ.get("GRID_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("grid-console", appauthor=False))


def workstation_name() -> str:
    """How this machine appears in the case log's 'from where' column."""
    return os.environ.get("GRID_WORKSTATION") or socket.gethostname()


@dataclass
class Settings:
    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    lang: str = "zh"
    simulate: bool = True  # run the simulator behind the window on the embedded demo
    basemap: str | None = None  # the map's basemap spec (see ``basemap_spec``)

    @classmethod
    def from_env(
        cls, database_url: str | None = None, data_dir: str | None = None, lang: str | None = None
    ) -> Settings:
        return cls(
            database_url=database_url or os.environ.get("GRID_DATABASE_URL") or None,
            data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
            lang=lang or os.environ.get("GRID_LANG", "zh"),
        )


DEMO_BASEMAP = "demo-basemap.mbtiles"  # under the data directory: what ``tiles build`` may write


def basemap_spec(settings: Settings, given: str | None = None) -> str | None:
    """The basemap the map shows: ``--basemap``, else ``GRID_BASEMAP``, else the demo's own.

    The embedded demo shows ``DATA_DIR/demo-basemap.mbtiles`` when one was built
    (``python main.py tiles build``); otherwise, and on a shared server unless
    told, there is no basemap ("none").  A spec is an XYZ URL template with
    ``{z}/{x}/{y}``, an ``.mbtiles`` or ``.pmtiles`` file, or ``none``.
    """
    spec = given or os.environ.get("GRID_BASEMAP") or None
    if spec is None and settings.database_url is None:
        demo = Path(settings.data_dir) / DEMO_BASEMAP
        if demo.is_file():
            spec = str(demo)
    return None if spec is None or spec.strip().lower() == "none" else spec
