"""网格指挥调度台 Grid Command Console — the composition root.

``python main.py`` opens the console on the embedded demo database;
``python main.py --help`` lists the commands.  This file only wires: the
command line is ``console.cli``'s, the commands that open windows (``open``,
``screenshot``) are ``widgets.app``'s, handed to the CLI here so that the
application below the views never imports them.
"""

from __future__ import annotations

import sys


class Windows:
    """The window commands, imported only when one is asked for (Qt loads slowly)."""

    def open(self, settings) -> int:
        from widgets.app import run_window

        return run_window(settings)

    def screenshot(self, settings, out, view, size, user, **map_view) -> int:
        from widgets.app import screenshot

        return screenshot(settings, out, view, size, user, **map_view)

    def tiles_build(self, settings, out, min_zoom, max_zoom, datum, district, threads) -> int:
        from widgets.map.tile_render import build_tiles

        return build_tiles(settings, out, min_zoom, max_zoom, datum, district, threads)


def run(argv: list[str] | None = None) -> int:
    from console.cli import main

    return main(argv, Windows())


if __name__ == "__main__":
    sys.exit(run())
