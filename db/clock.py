"""The dispatch hall's clock: its time zone, which case numbers and displayed times use.

It lives in ``db`` because case numbers (a day's sequence in the hall's time
zone) and the metrics' periods are the data's business; everything above
reads it from here.
"""

from __future__ import annotations

import os
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Shanghai"


def hall_timezone() -> ZoneInfo:
    """The dispatch hall's time zone (``GRID_TZ``, default Asia/Shanghai)."""
    return ZoneInfo(os.environ.get("GRID_TZ", DEFAULT_TZ))
