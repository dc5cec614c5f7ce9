"""``screenshot OUT.png --view replay --at ISO-TIME``: the map in replay at T, as a PNG.

Run as a user would (a subprocess on the test's database): the file is a PNG of the size
asked for (its IHDR read by hand), shows more than a flat colour, and the replay at T
shows the worker's stop; a bad ``--at`` is one line and exit 2, and writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.field_support import add_worker, put_fixes, territory
from tests.test_screenshot import colours, png_size, shot


def test_replay_view_at_t_is_a_png_of_the_size_asked(db_url, engine, tmp_path):
    place = territory(engine)
    _, did = add_worker(engine, "SR1", place.own_grid, device="SR-1")
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    cell = place.own_cells[0]
    fixes = [(base + timedelta(minutes=k), *cell.at(0.1 + 0.02 * min(k, 10), 0.5),
              6.0 if k < 10 or k >= 22 else 0.0, place.own_grid) for k in range(40)]
    put_fixes(engine, did, fixes)
    at = (base + timedelta(minutes=30)).isoformat()
    result, out = shot(db_url, tmp_path, f"--view replay --at {at} --size 1400x900")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert png_size(out) == (1400, 900)
    assert colours(out) > 20


def test_a_bad_at_is_one_line_and_exit_2(db_url, tmp_path):
    for bad in ("--at yesterday", "--at 2026-13-40T25:00", ""):
        result, out = shot(db_url, tmp_path, f"--view replay {bad} --size 800x600")
        assert result.returncode == 2, (bad, result.stderr)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "--at" in lines[0], (bad, result.stderr)
        assert "Traceback" not in result.stderr
        assert not out.exists()
