"""网格指挥调度台 Grid Command Console — the one entry point.

``python main.py`` opens the console on the embedded demo database;
``python main.py --help`` lists the commands.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from console.cli import main

    sys.exit(main())
