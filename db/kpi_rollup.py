"""The evaluation's reports from the daily rollup (revision 0010): the same rows as the
direct query over ``case_fact`` (``db.metrics``), in time that grows with the days of the
period, not with the cases.

For P = [t0, t1) every count of docs/DOMAIN.md §2 is, per case, either a step that came
in P (reported, filed, dispatched, fed back, closed, each with whether it came in time),
or for 应结案数 and 返工率 the case's "due" interval (lo, hi] meeting P: lo = max(filed,
min(closed, close deadline)), hi = closed; a case is due in P exactly when lo < t1 and
hi ≥ t0, which is "lo in P" or "due and unclosed at t0" (the backlog).  So a report is

* the rollup's days of P (``kpi_day``: the steps of each day, the intervals begun);
* plus the backlog at t0 (``kpi_case.backlog``, one GiST lookup: the cases overdue then);
* minus, for a period still running (t1 = now), the open cases whose deadline comes later
  today (the rollup holds whole days);
* and, for the few cases whose figures at t1 are not the ones the rollup counted (at t1
  the case was before its latest dispatch, before an extension of its close deadline,
  before a return; ``kpi_case.xwin``), their rollup share taken out and their figures
  for P computed as the direct query does, from ``case_fact``.

The medians are exact, the same float8 as the direct query's ``percentile_cont``: for a
long period (a good share of all closed cases) the two middle values of each group are
found by walking an index of the group's handling hours (``kpi_case``: by grid,
department, worker, the close's day, or all) to the middle, skipping the cases closed
outside P, and interpolated as PostgreSQL does; for a short one, or by street and
community (no such index), the period's hours are sorted.  The mean is the exact sum of
microseconds over the count (the direct query's float8 average may differ from it in the
last digit).

The rollup's days are in the zone recorded with it (``grid_kpi_zone()``); a hall whose
``GRID_TZ`` differs gets the direct query.  Every step time is in the past (the log
trigger stamps ``now()``, the import refuses future times); only close deadlines lie ahead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, text

from db.clock import hall_timezone
from db.metrics import (
    _FROM,
    _GROUPS,
    _HOURS,
    _KEY,
    COUNTED,
    SETS,
    WORK_MEM,
)

# kpi_day.dim of each grouping (district: the department rows, fewest per day).
_DIM = {"district": 2, "department": 2, "street": 1, "community": 1, "grid": 1, "worker": 3}
_DAY_KEY = {
    "district": "0",
    # the case's department only once its first dispatch came before the end of P
    "department": "CASE WHEN r.dday < :b THEN nullif(r.key, 0) END",
    "street": "cm.street_id",
    "community": "g.community_id",
    "grid": "nullif(r.key, 0)",
    "worker": "nullif(r.key, 0)",
}
_DAY_JOINS = {
    "street": "LEFT JOIN grid g ON g.id = nullif(r.key, 0) "
    "LEFT JOIN community cm ON cm.id = g.community_id",
    "community": "LEFT JOIN grid g ON g.id = nullif(r.key, 0)",
}
_CASE_KEY = {
    "district": "0",
    "department": "CASE WHEN c.dispatched_at < :t1x THEN c.department_id END",
    "street": "cm.street_id",
    "community": "g.community_id",
    "grid": "c.grid_id",
    "worker": "c.worker_id",
}
_CASE_JOINS = {
    "street": "LEFT JOIN grid g ON g.id = c.grid_id "
    "LEFT JOIN community cm ON cm.id = g.community_id",
    "community": "LEFT JOIN grid g ON g.id = c.grid_id",
}
# What each count sums in kpi_day.
_DAY_SUM = {
    "reported": "reported", "filed": "filed", "filed_timely": "filed_timely",
    "dispatched": "dispatched", "dispatched_timely": "dispatched_timely",
    "misrouted": "dispatched_returned", "fed_back": "fed_back",
    "fed_back_ontime": "fed_back_ontime", "closed": "closed",
    "closed_ontime": "closed_ontime", "due": "lo", "reworked": "lor",
    "closed_us": "closed_us", "hours_n": "hours_n",
}
PARTS = (*COUNTED, "closed_us", "hours_n")

# A case as the rollup counts it for P (the days [t0, t1x), t1x the midnight after the
# period's last day), for the cases recomputed at t1: the same figures the pipeline sums.
_IN_DAYS = "{col} >= :t0 AND {col} < :t1x"
_RF = {
    "reported": _IN_DAYS.format(col="f.reported_at"),
    "filed": _IN_DAYS.format(col="f.filed_at"),
    "filed_timely": _IN_DAYS.format(col="f.filed_at") + " AND f.filed_at <= f.file_due",
    "dispatched": _IN_DAYS.format(col="f.dispatched_at"),
    "dispatched_timely": _IN_DAYS.format(col="f.dispatched_at")
    + " AND f.dispatched_at <= f.dispatch_due",
    "misrouted": _IN_DAYS.format(col="f.dispatched_at") + " AND f.returned_at IS NOT NULL",
    "fed_back": _IN_DAYS.format(col="f.fed_back_at"),
    "fed_back_ontime": _IN_DAYS.format(col="f.fed_back_at")
    + " AND f.fed_back_at <= f.handle_due",
    "closed": _IN_DAYS.format(col="f.closed_at"),
    "closed_ontime": _IN_DAYS.format(col="f.closed_at") + " AND f.closed_at <= f.close_due",
    "due": "(c.lo_at >= :t0 AND c.lo_at < :t1x AND NOT (c.hi_at IS NULL AND c.lo_at >= :t1)) "
    "OR c.backlog @> CAST(:t0 AS timestamptz)",
    "reworked": "(c.lor_at >= :t0 AND c.lor_at < :t1x "
    "AND NOT (c.hi_at IS NULL AND c.lor_at >= :t1)) "
    "OR (c.backlog @> CAST(:t0 AS timestamptz) AND c.lor_at < :t0)",
}
_US = "(extract(epoch FROM f.closed_at - f.filed_at) * 1000000)::bigint"


def _counts(conds: dict[str, str], closed: str, sign: str = "") -> str:
    """Per-case 0/1 columns of ``conds`` and the closed case's microseconds."""
    cols = [f"{sign}(CASE WHEN {conds[name]} THEN 1 ELSE 0 END) AS {name}" for name in COUNTED]
    cols.append(f"{sign}(CASE WHEN {closed} THEN coalesce({_US}, 0) ELSE 0 END) AS closed_us")
    cols.append(f"{sign}(CASE WHEN ({closed}) AND f.filed_at IS NOT NULL THEN 1 ELSE 0 END) "
                "AS hours_n")
    return ", ".join(cols)


def _zero(names: tuple[str, ...], keep: dict[str, str]) -> str:
    return ", ".join(f"{keep.get(n, '0')} AS {n}" for n in names)


def report_sql(by: str) -> str:
    """Every metric of every group of ``by`` for P, from the rollup (see the module)."""
    dim = _DIM[by]
    day_sums = ", ".join(f"sum(r.{_DAY_SUM[n]}) AS {n}" for n in PARTS)
    true_counts = _counts(SETS, SETS["closed"])
    rf_counts = _counts(_RF, _RF["closed"], sign="-")
    cj = _CASE_JOINS.get(by, "")
    return f"""
WITH xc AS MATERIALIZED (
    SELECT x.case_id, x.irregular FROM kpi_case x WHERE x.xwin @> CAST(:t1 AS timestamptz)
), parts AS (
    SELECT {_DAY_KEY[by]} AS k, {day_sums}
      FROM kpi_day r {_DAY_JOINS.get(by, "")}
     WHERE r.dim = {dim} AND r.day >= :a AND r.day < :b
     GROUP BY 1
    UNION ALL
    SELECT {_CASE_KEY[by]}, {_zero(PARTS, {"due": "count(*)", "reworked":
                                           "count(*) FILTER (WHERE c.lor_at < :t0)"})}
      FROM kpi_case c {cj}
     WHERE c.backlog @> CAST(:t0 AS timestamptz)
     GROUP BY 1
    UNION ALL
    SELECT {_CASE_KEY[by]}, {_zero(PARTS, {
        "due": "-count(*) FILTER (WHERE c.lo_at >= :t1)",
        "reworked": "-count(*) FILTER (WHERE c.lor_at >= :t1 AND c.lor_at < :t1x)"})}
      FROM kpi_case c {cj}
     WHERE CAST(:t1 AS timestamptz) < CAST(:t1x AS timestamptz)
       AND c.hi_at IS NULL AND c.lo_at IS NOT NULL AND c.lo_at < :t1x
     GROUP BY 1
    UNION ALL
    SELECT {_KEY[by]}, {true_counts}
      FROM {_FROM} JOIN xc ON xc.case_id = f.case_id
    UNION ALL
    SELECT {_CASE_KEY[by]}, {rf_counts}
      FROM case_fact f JOIN xc ON xc.case_id = f.case_id AND NOT xc.irregular
      JOIN kpi_case c ON c.case_id = f.case_id {cj}
), a AS (
    SELECT k, {", ".join(f"sum({n})::bigint AS {n}" for n in PARTS)} FROM parts GROUP BY k
), grp AS ({_GROUPS[by]})
SELECT grp.key, grp.name, a.* FROM grp LEFT JOIN a ON a.k = grp.id
UNION ALL
SELECT NULL, NULL, a.* FROM a WHERE a.k IS NULL
"""


# The planner cannot tell how few cases a GiST lookup of kpi_case.xwin finds (it guesses
# thousands per instant, there are tens): it would hash all of case_fact to join them.
# The counts are read with nested loops over those few keys (their primary keys).
_NESTED_LOOPS = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
_ANY_JOINS = "SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on"
_XC = "SELECT x.case_id, x.irregular FROM kpi_case x WHERE x.xwin @> CAST(:t1 AS timestamptz)"


def median_sort_sql(by: str) -> str:
    """The medians by sorting the handling hours of the cases closed in P, per group (the
    cases recomputed at t1 in their group at t1)."""
    cj = _CASE_JOINS.get(by, "")
    return f"""
WITH xc AS MATERIALIZED ({_XC})
SELECT k, percentile_cont(0.5) WITHIN GROUP (ORDER BY h) AS median
  FROM (SELECT {_CASE_KEY[by]} AS k, c.hours AS h
          FROM kpi_case c {cj}
         WHERE c.closed_at >= :t0 AND c.closed_at < :t1
           AND NOT EXISTS (SELECT 1 FROM xc WHERE xc.case_id = c.case_id)
        UNION ALL
        SELECT {_KEY[by]}, {_HOURS}
          FROM {_FROM} JOIN xc ON xc.case_id = f.case_id
         WHERE {SETS["closed"]}) m
 GROUP BY k
"""


# The column a group's cases are indexed by, with their handling hours, for the walk.
_WALK_COLUMN = {"grid": "grid_id", "department": "department_id", "worker": "worker_id"}
_CLOSED_IN_P = "c.hours IS NOT NULL AND c.closed_at >= :t0 AND c.closed_at < :t1"
# Whether a case recomputed at t1 and closed in P sits in another group than the one its
# row in kpi_case is indexed by (only a case out of the usual order can): then the sort.
_WALK_SPOILED = f"""
SELECT count(*) FROM ({_XC}) xc JOIN kpi_case c ON c.case_id = xc.case_id
 WHERE xc.irregular AND {_CLOSED_IN_P}
"""


# Walk when the period's closed cases are at least 1/WALK_SHARE of all: a walk reads about
# half of every group's cases, a sort only the period's but at several times the cost each.
WALK_SHARE = 8


def _walk_sql(by: str, null_key: bool) -> str:
    """The two middle handling hours of each group (``:keys``, ``:ranks``: the 0-based
    rank of the lower middle), by walking the group's cases in order of their hours."""
    if by == "district":
        return (f"SELECT 0 AS k, array_agg(h ORDER BY h) FROM (SELECT c.hours AS h "
                f"FROM kpi_case c WHERE {_CLOSED_IN_P} ORDER BY c.hours "
                "OFFSET :rank LIMIT 2) w")
    col = _WALK_COLUMN[by]
    if null_key:
        return (f"SELECT NULL::integer AS k, array_agg(h ORDER BY h) FROM (SELECT c.hours AS h "
                f"FROM kpi_case c WHERE c.{col} IS NULL AND {_CLOSED_IN_P} ORDER BY c.hours "
                "OFFSET :rank LIMIT 2) w")
    return (f"SELECT q.k, w.hs FROM unnest(CAST(:keys AS integer[]), CAST(:ranks AS bigint[])) "
            "AS q(k, r) CROSS JOIN LATERAL (SELECT array_agg(h ORDER BY h) AS hs FROM ("
            f"SELECT c.hours AS h FROM kpi_case c WHERE c.{col} = q.k AND {_CLOSED_IN_P} "
            "ORDER BY c.hours OFFSET q.r LIMIT 2) s) w")


def median_of(n: int, middle: list[float] | None) -> float | None:
    """``percentile_cont(0.5)`` of n values from the values at 0-based ranks ⌊(n−1)/2⌋ and
    the next, computed as PostgreSQL does (so the same float8)."""
    if not n or not middle:
        return None
    p = 0.5 * (n - 1)
    first = int(p // 1)
    if p == first:
        return float(middle[0])
    lo, hi = float(middle[0]), float(middle[1])
    return lo + (p - first) * (hi - lo)


def report_rows(engine: Engine, by: str, params: dict) -> list[dict]:
    """The report's rows (dicts with the counts and the median) from the rollup."""
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
        conn.exec_driver_sql(_NESTED_LOOPS)
        rows = [dict(r._mapping) for r in conn.execute(text(report_sql(by)), params)]
        conn.exec_driver_sql(_ANY_JOINS)
        n_of = {r["k"]: int(r["hours_n"] or 0) for r in rows if r["k"] is not None
                or r["key"] is None}
        n_of = {k: n for k, n in n_of.items() if n}
        medians: dict = {}
        if n_of:
            medians = _medians(conn, by, params, n_of)
    for r in rows:
        r["handling_hours_median"] = medians.get(r["k"]) if r["k"] is not None or \
            r["key"] is None else None
    return rows


def _medians(conn, by: str, params: dict, n_of: dict) -> dict:
    """Per group the exact median: walked through an index of the group's hours when the
    period holds a good share of all closed cases (a sort would cost more), else sorted."""
    total = sum(n_of.values())
    known = conn.execute(text(
        "SELECT reltuples FROM pg_class WHERE relname = 'ix_kpi_case_hours'")).scalar()
    walk = ((by in _WALK_COLUMN or by == "district")
            and total * WALK_SHARE >= max(known or 0, 1))
    if walk and conn.execute(text(_WALK_SPOILED), params).scalar_one():
        walk = False
    if not walk:
        return {r.k: r.median for r in conn.execute(text(median_sort_sql(by)), params)}
    ranks = {k: (n - 1) // 2 for k, n in n_of.items()}
    out: dict = {}
    if by == "district":
        for k, hs in conn.execute(text(_walk_sql(by, False)), {**params, "rank": ranks[0]}):
            out[k] = median_of(n_of[k], hs)
        return out
    keys = [k for k in ranks if k is not None]
    if keys:
        found = conn.execute(text(_walk_sql(by, False)),
                             {**params, "keys": keys, "ranks": [ranks[k] for k in keys]})
        for k, hs in found:
            out[k] = median_of(n_of[k], hs)
    if None in ranks:
        for _k, hs in conn.execute(text(_walk_sql(by, True)), {**params, "rank": ranks[None]}):
            out[None] = median_of(n_of[None], hs)
    return out


def zone(engine: Engine) -> str:
    """The zone the rollup's days are in."""
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT grid_kpi_zone()")).scalar_one())


def align_zone(engine: Engine) -> int | None:
    """Rebuild the rollup in the hall's zone if it is in another (the owner's; ``db upgrade``).

    The rollup's days are the zone's days, fixed when it was built.  A hall whose
    ``GRID_TZ`` differs would otherwise get every report by the slower direct query
    (the same figures, ``usable`` is false), and never be told.  Returns the number
    of cases rebuilt, or None when the zone already agrees.
    """
    hall = hall_timezone().key
    if zone(engine) == hall:
        return None
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE grid_owner"))
        return int(conn.execute(text("SELECT grid_kpi_rebuild(:z)"), {"z": hall}).scalar_one())


def day_params(t0: datetime, t1: datetime) -> dict | None:
    """The rollup's days for [t0, t1): ``a`` ≤ day < ``b``, and t1x the midnight that ends
    day b − 1 (t1 itself, or for a period still running the coming midnight); None when
    t0 is not a midnight of the hall's clock (then the direct query answers)."""
    tz = hall_timezone()
    l0, l1 = t0.astimezone(tz), t1.astimezone(tz)
    if l0.timetz().replace(tzinfo=None) != time():
        return None
    midnight1 = datetime.combine(l1.date(), time(), tz).astimezone(UTC)
    if t1 == midnight1:
        b = l1.date()
        t1x = t1
    else:
        b = l1.date() + timedelta(days=1)
        t1x = datetime.combine(b, time(), tz).astimezone(UTC)
    return {"a": l0.date(), "b": b, "t1x": t1x}


def usable(engine: Engine) -> bool:
    """Whether the rollup's days are the hall's days."""
    return zone(engine) == hall_timezone().key


# --- the daily trend ----------------------------------------------------------------------

_E = "CAST(:edges AS timestamptz[])"


def _bucketed(conds: dict[str, str]) -> dict[str, str]:
    """``conds`` for the bucket [s, e) of a row of ``xc`` (ex: the midnight after it)."""
    out = {}
    for name, cond in conds.items():
        out[name] = (cond.replace("CAST(:t0 AS timestamptz)", "xc.s")
                     .replace("CAST(:t1 AS timestamptz)", "xc.e")
                     .replace(":t0", "xc.s").replace(":t1x", "xc.ex").replace(":t1", "xc.e"))
    return out


_TREND_COLUMNS = ("reported", "filed", "filed_timely", "dispatched", "dispatched_timely",
                  "dispatched_returned", "fed_back", "fed_back_ontime", "closed",
                  "closed_ontime", "closed_us", "hours_n", "lo", "lor", "hi", "hir")
# a recomputed case's counts in the trend's columns
_FIX_OF = {"dispatched_returned": "misrouted", "lo": "due", "lor": "reworked", "hi": "0",
           "hir": "0"}


def _trend_sql() -> str:
    day_sums = ", ".join(f"sum(r.{c}) AS {c}" for c in _TREND_COLUMNS)
    tb, rb = _bucketed(SETS), _bucketed(_RF)
    true_counts = _counts(tb, tb["closed"])
    rf_counts = _counts(rb, rb["closed"], sign="-")
    parts = ", ".join(f"sum({n})::bigint AS {n}" for n in PARTS)
    return f"""
WITH bk AS MATERIALIZED (
    SELECT j, ({_E})[j] AS s, ({_E})[j + 1] AS e,
           CASE WHEN j = :n THEN CAST(:t1x AS timestamptz) ELSE ({_E})[j + 1] END AS ex
      FROM generate_series(1, :n) AS j
), xc AS MATERIALIZED (
    SELECT bk.j, bk.s, bk.e, bk.ex, x.case_id, x.irregular
      FROM bk JOIN kpi_case x ON x.xwin @> bk.e
)
SELECT 'day' AS kind, (r.day - CAST(:a AS date)) + 1 AS j, {day_sums}, NULL::float8 AS median
  FROM kpi_day r WHERE r.dim = 2 AND r.day >= :a AND r.day < :b GROUP BY r.day
UNION ALL
SELECT 'backlog', 1, {", ".join(
        "count(*)" if c == "lo" else "count(*) FILTER (WHERE c.lor_at < :e0)" if c == "lor"
        else "0" for c in _TREND_COLUMNS)}, NULL
  FROM kpi_case c WHERE c.backlog @> CAST(:e0 AS timestamptz)
UNION ALL
SELECT 'future', :n, {", ".join(
        "-count(*) FILTER (WHERE c.lo_at >= :en)" if c == "lo"
        else "-count(*) FILTER (WHERE c.lor_at >= :en AND c.lor_at < :t1x)" if c == "lor"
        else "0" for c in _TREND_COLUMNS)}, NULL
  FROM kpi_case c
 WHERE CAST(:en AS timestamptz) < CAST(:t1x AS timestamptz)
   AND c.hi_at IS NULL AND c.lo_at IS NOT NULL AND c.lo_at < :t1x
UNION ALL
SELECT 'fix', j, {", ".join(_FIX_OF.get(c, c) for c in _TREND_COLUMNS)}, NULL
  FROM (SELECT xc.j, {parts} FROM (
          SELECT xc.j, {true_counts} FROM xc JOIN case_fact f ON f.case_id = xc.case_id
          UNION ALL
          SELECT xc.j, {rf_counts} FROM xc JOIN case_fact f ON f.case_id = xc.case_id
            JOIN kpi_case c ON c.case_id = xc.case_id
           WHERE NOT xc.irregular) xc GROUP BY xc.j) fixes
"""

# The two middle handling hours of each day (``:days``, ``:ranks``), walked in order.
_DAY_WALK = """
SELECT q.d, w.hs FROM unnest(CAST(:days AS date[]), CAST(:ranks AS bigint[])) AS q(d, r)
 CROSS JOIN LATERAL (SELECT array_agg(h ORDER BY h) AS hs FROM (
       SELECT c.hours AS h FROM kpi_case c
        WHERE c.close_day = q.d AND c.hours IS NOT NULL
          AND c.closed_at >= :e0 AND c.closed_at < :en
        ORDER BY c.hours OFFSET q.r LIMIT 2) s) w
"""


TREND_SQL = _trend_sql()


def daily(engine: Engine, edges: list[datetime], start: date) -> list[dict] | None:
    """Per bucket [edges[j], edges[j+1]) the counts, backlog carried day to day (the
    rollup's intervals begun minus ended); None when the edges are not the rollup's days."""
    n = len(edges) - 1
    p = day_params(edges[0], edges[-1])
    if p is None:
        return None
    params = {"edges": edges, "n": n, "e0": edges[0], "en": edges[-1], "a": start,
              "b": p["b"], "t1x": p["t1x"]}
    per = {j: dict.fromkeys(_TREND_COLUMNS, 0) for j in range(1, n + 2)}
    backlog = dict.fromkeys(_TREND_COLUMNS, 0)
    fixes: dict[int, dict] = {}
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(_NESTED_LOOPS)
        found = conn.execute(text(TREND_SQL), params).all()
        conn.exec_driver_sql(_ANY_JOINS)
        for row in found:
            kind, j = row[0], row[1]
            values = dict(zip(_TREND_COLUMNS, row[2:18], strict=True))
            if kind == "backlog":
                backlog = values
            elif kind == "fix":
                fixes[j] = values
            elif j is not None and 1 <= j <= n + 1:
                for c, v in values.items():
                    per[j][c] += int(v or 0)
        sizes = {j: per[j]["hours_n"] + int(fixes.get(j, {}).get("hours_n") or 0)
                 for j in range(1, n + 1)}
        walk = [j for j, size in sizes.items() if size]
        medians = {}
        if walk:
            found = conn.execute(text(_DAY_WALK), {
                "days": [start + timedelta(days=j - 1) for j in walk],
                "ranks": [(sizes[j] - 1) // 2 for j in walk], "e0": edges[0], "en": edges[-1]})
            for d, hs in found:
                j = (d - start).days + 1
                medians[j] = median_of(sizes[j], hs)
    out = []
    due_open, rework_open = int(backlog["lo"]), int(backlog["lor"])  # at the day's start
    for j in range(1, n + 1):
        d = per[j]
        fix = fixes.get(j, dict.fromkeys(_TREND_COLUMNS, 0))
        counts = {
            "reported": d["reported"], "filed": d["filed"], "filed_timely": d["filed_timely"],
            "dispatched": d["dispatched"], "dispatched_timely": d["dispatched_timely"],
            "misrouted": d["dispatched_returned"], "fed_back": d["fed_back"],
            "fed_back_ontime": d["fed_back_ontime"], "closed": d["closed"],
            "closed_ontime": d["closed_ontime"], "closed_us": d["closed_us"],
            "hours_n": d["hours_n"], "due": due_open + d["lo"], "reworked": rework_open + d["lor"],
        }
        for name in counts:
            col = {"misrouted": "dispatched_returned", "due": "lo", "reworked": "lor"}.get(name,
                                                                                       name)
            counts[name] += int(fix.get(col) or 0)
        due_open += d["lo"] - d["hi"]
        rework_open += d["lor"] - d["hir"]
        counts["median"] = medians.get(j)
        out.append(counts)
    return out
