"""Case numbers: ``YYYYMMDD-NNNNN``, the date and the day's sequence in the hall's time zone.

README: "``GRID_TZ``: the hall's time zone for case numbers and displayed
times (default ``Asia/Shanghai``)".  The services take "now" from the
database, which no test may wind; so to see a midnight pass the test makes
a time zone in which it is 23:59:55 right now: a fixed offset written as a
POSIX zone (which PostgreSQL reads from its name) with the matching TZif
file for Python's ``zoneinfo``.  Then the real clock crosses the hall's
midnight a few seconds later, and the test reports a case on each side.
"""

from __future__ import annotations

import struct
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db.clock import hall_timezone
from tests.conftest import wait_for
from tests.flows import report


def _posix_name(offset_s: int) -> str:
    """A POSIX zone name for UTC+offset (POSIX counts hours *west*, hence the sign)."""
    sign = "-" if offset_s >= 0 else "+"
    a = abs(offset_s)
    return f"HAL{sign}{a // 3600:02d}:{a % 3600 // 60:02d}:{a % 60:02d}"


def _tzif(offset_s: int, abbreviation: str, posix: str) -> bytes:
    """A TZif (version 2) file with one fixed offset and its POSIX footer (RFC 8536)."""
    chars = abbreviation.encode() + b"\0"
    header = b"TZif2" + b"\0" * 15 + struct.pack(">6l", 0, 0, 0, 0, 1, len(chars))
    body = struct.pack(">lBB", offset_s, 0, 0) + chars
    return header + body + header + body + b"\n" + posix.encode() + b"\n"


@pytest.fixture
def hall_zone_near_midnight(monkeypatch, tmp_path):
    """GRID_TZ set to a zone whose local time is 23:59:55 now; yields (zone, local midnight)."""
    now = datetime.now(UTC)
    seconds = now.hour * 3600 + now.minute * 60 + now.second
    offset = (86_400 - 5 - seconds) % 86_400
    if offset > 12 * 3600:
        offset -= 86_400  # keep it within ±12 h, as real offsets are
    name = _posix_name(offset)
    (tmp_path / name).write_bytes(_tzif(offset, "HAL", name))
    saved = zoneinfo.TZPATH
    zoneinfo.reset_tzpath([str(tmp_path), *saved])
    monkeypatch.setenv("GRID_TZ", name)
    zone = zoneinfo.ZoneInfo(name)
    local = now.astimezone(zone)
    assert (local.hour, local.minute) == (23, 59) and local.second >= 54  # the test's own sum
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    try:
        yield zone, midnight
    finally:
        zoneinfo.reset_tzpath(saved)


def _db_now(engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(text("SELECT now()")).scalar_one()


def _reported_at(engine, case_id: int) -> datetime:
    with engine.connect() as conn:
        return conn.execute(
            text('SELECT reported_at FROM "case" WHERE id = :i'), {"i": case_id}
        ).scalar_one()


def test_numbers_change_date_and_restart_at_the_halls_midnight(
    engine, actors, hall_zone_near_midnight
):
    zone, midnight = hall_zone_near_midnight
    day1 = midnight.date() - timedelta(days=1)
    day2 = midnight.date()
    before = [report(engine, actors) for _ in range(3)]
    for made in before:
        assert _reported_at(engine, made.case_id) < midnight, "reported too slowly to test"

    assert wait_for(lambda: _db_now(engine) >= midnight + timedelta(seconds=1), timeout=30)
    after = [report(engine, actors) for _ in range(2)]

    assert [m.number for m in before] == [f"{day1:%Y%m%d}-{n:05d}" for n in (1, 2, 3)]
    assert [m.number for m in after] == [f"{day2:%Y%m%d}-{n:05d}" for n in (1, 2)]
    for made in after:
        local = _reported_at(engine, made.case_id).astimezone(zone)
        assert local.date() == day2 and (local.hour, local.minute) == (0, 0)
    # Each number is unique, the five cases all exist.
    with engine.connect() as conn:
        numbers = conn.execute(text('SELECT number FROM "case" ORDER BY id')).scalars().all()
    assert numbers == [m.number for m in before + after]


@pytest.mark.parametrize("zone_name", ["Asia/Shanghai", "Pacific/Pago_Pago", "Pacific/Kiritimati"])
def test_the_number_carries_the_halls_date(engine, actors, monkeypatch, zone_name):
    # UTC+8, UTC−11 and UTC+14: whatever the hour, at least one of them is on another
    # date than UTC (−11 before 11:00 UTC, +14 from 10:00 UTC), and each number must
    # carry its own zone's date.
    monkeypatch.setenv("GRID_TZ", zone_name)
    zone = zoneinfo.ZoneInfo(zone_name)
    before = datetime.now(zone).date()
    made = report(engine, actors)
    after = datetime.now(zone).date()
    assert made.number[:8] in {f"{before:%Y%m%d}", f"{after:%Y%m%d}"}
    assert made.number.endswith("-00001")
    local = _reported_at(engine, made.case_id).astimezone(zone)
    assert made.number[:8] == f"{local:%Y%m%d}"


def test_default_zone_is_asia_shanghai(engine, actors, monkeypatch):
    monkeypatch.delenv("GRID_TZ", raising=False)
    assert hall_timezone().key == "Asia/Shanghai"
    made = report(engine, actors)
    shanghai = _reported_at(engine, made.case_id).astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert made.number == f"{shanghai:%Y%m%d}-00001"
