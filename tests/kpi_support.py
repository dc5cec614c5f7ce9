"""A hand-built history whose metrics the kpi tests work out by hand (test helper).

A small rectangular district (two streets, one community each, four grids), two grid
workers, and the legacy file ``history.jsonl``: twelve cases of March 2025 in
Asia/Shanghai (C1–C12, one line each) with four broken lines among them.  Every time
is written with its offset (``+08:00``) except two, written in UTC (``Z``) across the
hall's midnight.  What each case is for is said beside it; the arithmetic is in the
tests.

Case  place  what it exercises
C1    A      the plain loop, on time; reported by worker W1
C2    A      joint handling (shizheng lead, huanwei co): the lead feeds back early, the
             co-department late, so handling is late; filed late; closed the next day
C3    B      reported at 23:59:59 the day before; filed at 00:30 written in UTC (16:30Z);
             sent to the wrong department, returned, re-dispatched (misrouted); worker W2
C4    B      a failed verification (rework); closed late, two days on
C5    A      no deadlines in the file: they come from the time limits; an extension
             approved; still open at the end of the month
C6    B      no deadlines in the file; filed late; a 72 h extension approved only after
             the week ended (the week's close deadline is the one before it)
C7    A      handled on the spot by W1 (filed and fed back when reported)
C8    A      rejected
C9    B      reported on 31 March, filed exactly at midnight (16:00Z): not filed in March
C10   B      filed in February, overdue and open: due in every period of March
C12   A      dispatched to huanwei, reassigned to shizheng the next day
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, text

# The district: about 3.4 × 2.2 km inside Dongcheng, in WGS-84.
WEST, EAST, SOUTH, NORTH = 116.400, 116.440, 39.900, 39.920
A = (116.404, 39.910)  # west
B = (116.436, 39.910)  # east
WORKERS = [("W1", "王网格"), ("W2", "李网格")]
# Time limits (hours) of S0102 at severity "urgent", set by the test so that C5, C6 and C7
# (the cases without deadlines in the file) have deadlines one can work out by hand.
URGENT_LIMITS = {"accept_h": 1, "file_h": 2, "dispatch_h": 1, "handle_h": 24, "verify_h": 4,
                 "close_h": 48}


def boundary(path: Path) -> Path:
    ring = [[WEST, SOUTH], [EAST, SOUTH], [EAST, NORTH], [WEST, NORTH], [WEST, SOUTH]]
    path.write_text(json.dumps({"type": "Feature",
                                "properties": {"adcode": "110198", "name": "评价区"},
                                "geometry": {"type": "Polygon", "coordinates": [ring]}},
                               ensure_ascii=False), encoding="utf-8")
    return path


def setup_hall(engine: Engine, tmp_path: Path) -> None:
    """The district, the two workers and the urgent time limits (as the owner)."""
    from db.territory import import_district

    import_district(engine, boundary(tmp_path / "district.geojson"), crs="wgs84", cell_m=200,
                    streets=2, communities=2, grids=4)
    with engine.begin() as conn:
        for code, name in WORKERS:
            conn.execute(text("INSERT INTO worker (code, name) VALUES (:c, :n)"),
                         {"c": code, "n": name})
        conn.execute(
            text("UPDATE time_limit SET accept_h = :accept_h, file_h = :file_h, "
                 "dispatch_h = :dispatch_h, handle_h = :handle_h, verify_h = :verify_h, "
                 "close_h = :close_h WHERE severity = 'urgent' AND category_id = "
                 "(SELECT id FROM category WHERE code = 'S0102')"),
            URGENT_LIMITS,
        )


def t(day_time: str) -> str:
    """``"03-03 08:00"`` → ``2025-03-03T08:00:00+08:00`` (seconds may be given)."""
    day, clock = day_time.split()
    if clock.count(":") == 1:
        clock += ":00"
    return f"2025-{day}T{clock}+08:00"


def ev(action: str, at: str, actor: str, role: str, **extra) -> dict:
    at = at if at.endswith("Z") or "+" in at else t(at)
    return {"action": action, "at": at, "actor": actor, "role": role, **extra}


INTAKE, DISPATCHER, VERIFIER, LEADER = "张受理", "李派遣", "陈核查", "刘值班"
HW, SZ, YL = "环卫所", "市政所", "园林所"


def case(number: str, place, events: list[dict], severity: str = "normal",
         due: dict | None = None, **extra) -> dict:
    c = {"number": number, "category": "S0102", "severity": severity, "source": "patrol",
         "lon": place[0], "lat": place[1], "crs": "wgs84", "address": f"{number} 附近",
         "description": f"{number} 路边暴露垃圾", "events": events, **extra}
    if due:
        c["due"] = {k: t(v) for k, v in due.items()}
    return c


def cases() -> list[dict]:
    return [
        case("C1", A, [
            ev("report", "03-03 08:00", INTAKE, "intake", worker="W1"),
            ev("accept", "03-03 08:10", INTAKE, "intake"),
            ev("file", "03-03 08:30", INTAKE, "intake"),
            ev("dispatch", "03-03 09:00", DISPATCHER, "dispatcher", department="huanwei"),
            ev("acknowledge", "03-03 09:30", HW, "department"),
            ev("feedback", "03-03 12:00", HW, "department"),
            ev("verify_pass", "03-03 14:00", VERIFIER, "verifier"),
            ev("archive", "03-04 10:00", INTAKE, "intake", evaluation="satisfied"),
        ], due={"file": "03-03 09:00", "dispatch": "03-03 09:30", "handle": "03-03 18:00",
                "close": "03-05 08:30"}),
        case("C2", A, [
            ev("report", "03-03 00:00", INTAKE, "intake"),
            ev("accept", "03-03 00:05", INTAKE, "intake"),
            ev("file", "03-03 00:20", INTAKE, "intake"),
            ev("dispatch", "03-03 01:00", DISPATCHER, "dispatcher", department="shizheng",
               co_departments=["huanwei"]),
            ev("acknowledge", "03-03 01:30", SZ, "department", department="shizheng"),
            ev("acknowledge", "03-03 01:40", HW, "department", department="huanwei"),
            ev("feedback", "03-03 05:00", SZ, "department", department="shizheng"),
            ev("feedback", "03-03 20:00", HW, "department", department="huanwei"),
            ev("verify_pass", "03-04 09:00", VERIFIER, "verifier"),
        ], due={"file": "03-03 00:10", "dispatch": "03-03 02:00", "handle": "03-03 12:00",
                "close": "03-04 12:00"}),
        case("C3", B, [
            ev("report", "03-02 23:59:59", INTAKE, "intake", worker="W2"),
            ev("accept", "03-03 00:10", INTAKE, "intake"),
            ev("file", "2025-03-02T16:30:00Z", INTAKE, "intake"),  # 03-03 00:30 in Shanghai
            ev("dispatch", "03-03 01:00", DISPATCHER, "dispatcher", department="yuanlin"),
            ev("return", "03-03 02:00", YL, "department", reason="不属于本单位职责"),
            ev("dispatch", "03-03 02:30", DISPATCHER, "dispatcher", department="huanwei"),
            ev("acknowledge", "03-03 03:00", HW, "department"),
            ev("feedback", "03-03 10:00", HW, "department"),
            ev("verify_pass", "03-03 12:00", VERIFIER, "verifier"),
        ], due={"file": "03-03 01:00", "dispatch": "03-03 02:00", "handle": "03-03 18:00",
                "close": "03-05 00:30"}),
        case("C4", B, [
            ev("report", "03-03 09:00", INTAKE, "intake"),
            ev("accept", "03-03 09:05", INTAKE, "intake"),
            ev("file", "03-03 09:10", INTAKE, "intake"),
            ev("dispatch", "03-03 09:30", DISPATCHER, "dispatcher", department="huanwei"),
            ev("acknowledge", "03-03 10:00", HW, "department"),
            ev("feedback", "03-03 11:00", HW, "department"),
            ev("verify_fail", "03-03 13:00", VERIFIER, "verifier", reason="现场复查仍未整改到位"),
            ev("acknowledge", "03-03 13:30", HW, "department"),
            ev("feedback", "03-04 09:00", HW, "department"),
            ev("verify_pass", "03-05 10:00", VERIFIER, "verifier"),
        ], due={"file": "03-03 10:00", "dispatch": "03-03 10:00", "handle": "03-03 12:00",
                "close": "03-05 09:10"}),
        case("C5", A, [
            ev("report", "03-04 10:00", INTAKE, "intake"),
            ev("accept", "03-04 10:30", INTAKE, "intake"),
            ev("file", "03-04 11:00", INTAKE, "intake"),
            ev("dispatch", "03-04 11:30", DISPATCHER, "dispatcher", department="huanwei"),
            ev("acknowledge", "03-04 12:00", HW, "department"),
            ev("request_extension", "03-05 09:00", HW, "department", hours=48,
               reason="需要协调施工队伍"),
            ev("approve_extension", "03-05 10:00", LEADER, "leader"),
        ], severity="urgent"),
        case("C6", B, [
            ev("report", "03-06 08:00", INTAKE, "intake"),
            ev("accept", "03-06 08:30", INTAKE, "intake"),
            ev("file", "03-06 12:00", INTAKE, "intake"),
            ev("dispatch", "03-06 12:30", DISPATCHER, "dispatcher", department="shizheng"),
            ev("acknowledge", "03-06 13:00", SZ, "department"),
            ev("request_extension", "03-09 09:00", SZ, "department", hours=72,
               reason="管线抢修"),
            ev("approve_extension", "03-10 09:00", LEADER, "leader"),
            ev("feedback", "03-10 12:00", SZ, "department"),
            ev("verify_pass", "03-10 14:00", VERIFIER, "verifier"),
        ], severity="urgent"),
        case("C7", A, [
            ev("report", "03-03 15:00", INTAKE, "intake", onsite=True, worker="W1"),
            ev("verify_pass", "03-03 16:00", VERIFIER, "verifier"),
        ], severity="urgent"),
        case("C8", A, [
            ev("report", "03-03 10:00", INTAKE, "intake"),
            ev("reject", "03-03 10:30", INTAKE, "intake", reason="不属于城市管理范围"),
        ]),
        case("C9", B, [
            ev("report", "03-31 23:30", INTAKE, "intake"),
            ev("accept", "03-31 23:40", INTAKE, "intake"),
            ev("file", "2025-03-31T16:00:00Z", INTAKE, "intake"),  # 04-01 00:00 in Shanghai
        ], due={"file": "04-01 01:00", "dispatch": "04-01 02:00", "close": "04-03 00:00"}),
        case("C10", B, [
            ev("report", "02-20 09:00", INTAKE, "intake"),
            ev("accept", "02-20 09:30", INTAKE, "intake"),
            ev("file", "02-20 10:00", INTAKE, "intake"),
            ev("dispatch", "02-20 10:30", DISPATCHER, "dispatcher", department="huanwei"),
            ev("acknowledge", "02-20 11:00", HW, "department"),
        ], due={"file": "02-20 12:00", "dispatch": "02-20 12:00", "handle": "02-21 10:30",
                "close": "02-25 10:00"}),
        case("C12", A, [
            ev("report", "03-03 11:00", INTAKE, "intake"),
            ev("accept", "03-03 11:05", INTAKE, "intake"),
            ev("file", "03-03 11:10", INTAKE, "intake"),
            ev("dispatch", "03-03 11:20", DISPATCHER, "dispatcher", department="huanwei"),
            ev("reassign", "03-04 09:00", DISPATCHER, "dispatcher", department="shizheng",
               reason="改由市政处置"),
            ev("acknowledge", "03-04 09:30", SZ, "department"),
            ev("feedback", "03-04 15:00", SZ, "department"),
            ev("verify_pass", "03-04 17:00", VERIFIER, "verifier"),
        ], due={"file": "03-03 12:00", "dispatch": "03-03 12:00", "handle": "03-04 20:00",
                "close": "03-05 11:10"}),
    ]


# Four lines the import refuses, each for one reason, with their line numbers in the file.
BAD_LINES = {
    3: '{"number": "X-BROKEN", "category": "S0102", ',  # not JSON
    6: case("X-ROLE", A, [  # an intake operator may not dispatch
        ev("report", "03-03 08:00", INTAKE, "intake"),
        ev("accept", "03-03 08:10", INTAKE, "intake"),
        ev("file", "03-03 08:30", INTAKE, "intake"),
        ev("dispatch", "03-03 09:00", INTAKE, "intake", department="huanwei"),
    ]),
    9: case("X-TIME", B, [  # time goes backwards
        ev("report", "03-03 08:00", INTAKE, "intake"),
        ev("accept", "03-03 07:00", INTAKE, "intake"),
    ]),
    12: case("X-OUT", (116.300, 39.800), [  # outside the territory
        ev("report", "03-03 08:00", INTAKE, "intake"),
    ]),
    14: case("X-STEP", A, [  # feedback before it was ever dispatched
        ev("report", "03-03 08:00", INTAKE, "intake"),
        ev("accept", "03-03 08:10", INTAKE, "intake"),
        ev("feedback", "03-03 09:00", HW, "department"),
    ]),
}
NUMBERS = [c["number"] for c in cases()]


def history_lines() -> list[str]:
    """The file's lines: the twelve cases, with the broken ones at their line numbers."""
    good = [json.dumps(c, ensure_ascii=False) for c in cases()]
    lines: list[str] = []
    total = len(good) + len(BAD_LINES)
    it = iter(good)
    for n in range(1, total + 1):
        bad = BAD_LINES.get(n)
        if bad is None:
            lines.append(next(it))
        else:
            lines.append(bad if isinstance(bad, str) else json.dumps(bad, ensure_ascii=False))
    return lines


def write_history(path: Path) -> Path:
    path.write_text("\n".join(history_lines()) + "\n", encoding="utf-8")
    return path


def console_engine(db_url: str) -> Engine:
    """The test database as a console connects to it (the embedded server's local role)."""
    import os

    import pytest

    from db.engine import make_engine, role_url

    if os.environ.get("GRID_DATABASE_URL"):
        pytest.skip("a shared server's grid_console needs its password")
    return make_engine(role_url(db_url, "grid_console"))


def place_codes(engine: Engine) -> dict[str, dict]:
    """The grid, community and street of A and B, as the territory answers them."""
    from db.territory_queries import locate_point

    out = {}
    for name, (lon, lat) in (("A", A), ("B", B)):
        where = locate_point(engine, lon, lat, "wgs84")
        out[name] = {"grid": where["grid"]["code"], "community": where["community"]["code"],
                     "street": where["street"]["code"]}
    return out
