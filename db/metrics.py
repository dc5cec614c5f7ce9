"""综合评价: every metric of docs/DOMAIN.md §2 "Evaluation", computed from the case log.

Nothing is typed in.  The database folds each case's log into one row of facts
(``case_fact``, revision 0006: when each step first came and the deadline in force
then); :func:`refresh` asks it to fold the cases whose log grew since the last time.
Every metric is then a condition on those facts and the period P = [from, to), and a
report is **one** set-based query: all metrics, all groups, one scan.

How the specification's words become conditions (the report, the drill-down and the
trend share these snippets, so a number and the cases behind it never disagree):

==================  ===========================================================
reported            report in P
filed               first ``file`` in P (a case handled on the spot is filed,
                    and fed back, when it is reported)
dispatched          first ``dispatch`` in P
fed back            the case's first feedback (the one that completed handling:
                    in joint handling, the last department's) in P
closed              ``verify_pass`` or a leader's ``close`` in P
due (应结案数)       filed before the end of P, not closed before its start, and
                    closed in P or with its close deadline (in force at the end
                    of P) before the end of P
on time             at or before the deadline in force when the step came
misrouted           dispatched in P and returned (退单) before the end of P
reworked            due, and a failed verification before the end of P
==================  ===========================================================

Rates are fractions, ``None`` when their denominator is zero ("no data", never 0 or
1).  Groups: the department of the latest dispatch or reassignment before the end of
P (cases not dispatched by then form the group ``None``, 未派遣); street, community and
grid of the case's grid; the grid worker who reported it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, text

from db.clock import hall_timezone
from db.errors import BadInput
from db.session import transaction

GROUPINGS: tuple[str, ...] = ("district", "department", "street", "community", "grid", "worker")
GROUPING_LABELS: dict[str, tuple[str, str]] = {
    "district": ("全区", "district"),
    "department": ("处置单位", "department"),
    "street": ("街道", "street"),
    "community": ("社区", "community"),
    "grid": ("网格", "grid"),
    "worker": ("网格员", "worker"),
}
COUNTS: tuple[str, ...] = ("reported", "filed", "dispatched", "closed", "due")
RATES: tuple[str, ...] = (
    "timely_filing",
    "timely_dispatch",
    "ontime_handling",
    "dispatch_accuracy",
    "rework",
    "closure",
    "ontime_closure",
)
HOURS: tuple[str, ...] = ("handling_hours_mean", "handling_hours_median")
METRICS: tuple[str, ...] = COUNTS + RATES + HOURS
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "reported": ("上报数", "reported"),
    "filed": ("立案数", "filed"),
    "dispatched": ("派遣数", "dispatched"),
    "closed": ("结案数", "closed"),
    "due": ("应结案数", "due"),
    "timely_filing": ("及时立案率", "timely filing"),
    "timely_dispatch": ("及时派遣率", "timely dispatch"),
    "ontime_handling": ("按期处置率", "handled on time"),
    "dispatch_accuracy": ("派遣准确率", "dispatch accuracy"),
    "rework": ("返工率", "rework"),
    "closure": ("结案率", "closure"),
    "ontime_closure": ("按期结案率", "closed on time"),
    "handling_hours_mean": ("平均处置时长(h)", "mean handling (h)"),
    "handling_hours_median": ("处置时长中位数(h)", "median handling (h)"),
}
# Lower is better for these: rankings put the smallest first.
ASCENDING = frozenset({"rework", "handling_hours_mean", "handling_hours_median"})
# rate → (numerator count, denominator count); dispatch accuracy is 1 − misrouted/dispatched.
RATE_PARTS: dict[str, tuple[str, str]] = {
    "timely_filing": ("filed_timely", "filed"),
    "timely_dispatch": ("dispatched_timely", "dispatched"),
    "ontime_handling": ("fed_back_ontime", "fed_back"),
    "dispatch_accuracy": ("misrouted", "dispatched"),
    "rework": ("reworked", "due"),
    "closure": ("closed", "due"),
    "ontime_closure": ("closed_ontime", "due"),
}

# --- the conditions, once --------------------------------------------------------------

# The close deadline in force at the end of P: the stored one unless an extension moved
# it at or after the end of P (rare), then the one before the move.
_CLOSE_DUE_AT_END = (
    "CASE WHEN f.close_changed_at IS NULL OR f.close_changed_at < :t1 THEN f.close_due "
    "ELSE (SELECT d.due_at FROM case_fact_close_due d WHERE d.case_id = f.case_id "
    "AND d.from_at < :t1 ORDER BY d.from_at DESC, d.seq DESC LIMIT 1) END"
)
_IN = "{col} >= :t0 AND {col} < :t1"
SETS: dict[str, str] = {
    "reported": _IN.format(col="f.reported_at"),
    "filed": _IN.format(col="f.filed_at"),
    "dispatched": _IN.format(col="f.dispatched_at"),
    "fed_back": _IN.format(col="f.fed_back_at"),
    "closed": _IN.format(col="f.closed_at"),
    "due": (
        "f.filed_at < :t1 AND (f.closed_at IS NULL OR f.closed_at >= :t0) "
        f"AND (f.closed_at < :t1 OR ({_CLOSE_DUE_AT_END}) < :t1)"
    ),
}
SETS.update(
    filed_timely=f"{SETS['filed']} AND f.filed_at <= f.file_due",
    dispatched_timely=f"{SETS['dispatched']} AND f.dispatched_at <= f.dispatch_due",
    fed_back_ontime=f"{SETS['fed_back']} AND f.fed_back_at <= f.handle_due",
    misrouted=f"{SETS['dispatched']} AND f.returned_at < :t1",
    closed_ontime=f"{SETS['closed']} AND f.closed_at <= f.close_due",
    reworked=f"({SETS['due']}) AND f.reworked_at < :t1",
)
# The cases behind a number a person may click, and their opposites ("the late ones").
SETS.update(
    filed_late=f"{SETS['filed']} AND NOT coalesce(f.filed_at <= f.file_due, false)",
    dispatched_late=f"{SETS['dispatched']} "
    "AND NOT coalesce(f.dispatched_at <= f.dispatch_due, false)",
    fed_back_late=f"{SETS['fed_back']} AND NOT coalesce(f.fed_back_at <= f.handle_due, false)",
    closed_late=f"{SETS['closed']} AND NOT coalesce(f.closed_at <= f.close_due, false)",
    due_open=f"({SETS['due']}) AND NOT coalesce({SETS['closed']}, false)",
)
COUNTED: tuple[str, ...] = (
    "reported",
    "filed",
    "filed_timely",
    "dispatched",
    "dispatched_timely",
    "misrouted",
    "fed_back",
    "fed_back_ontime",
    "closed",
    "closed_ontime",
    "due",
    "reworked",
)

# The department of the latest dispatch (or reassignment) before the end of P.
_DEPARTMENT_AT_END = (
    "CASE WHEN f.dispatched_at IS NULL OR f.dispatched_at >= :t1 THEN NULL "
    "WHEN f.lead_at < :t1 THEN f.lead_department_id "
    "ELSE (SELECT (l.payload->>'department_id')::integer FROM case_log l "
    "WHERE l.case_id = f.case_id AND l.action IN ('dispatch', 'reassign') AND l.at < :t1 "
    "ORDER BY l.seq DESC LIMIT 1) END"
)
_KEY: dict[str, str] = {
    "district": "0",
    "department": _DEPARTMENT_AT_END,
    "street": "cm.street_id",
    "community": "g.community_id",
    "grid": "f.grid_id",
    "worker": "f.worker_id",
}
# Every group of a grouping, so a group without cases shows as "no data", not missing.
_GROUPS: dict[str, str] = {
    "district": "SELECT 0 AS id, 'district' AS key, "
    "coalesce((SELECT string_agg(name, '、' ORDER BY adcode) FROM district), '全区') AS name",
    "department": "SELECT id, code AS key, name FROM department",
    "street": "SELECT id, code AS key, name FROM street",
    "community": "SELECT id, code AS key, name FROM community",
    "grid": "SELECT id, code AS key, name FROM grid",
    "worker": "SELECT id, code AS key, name FROM worker",
}
_FROM = (
    "case_fact f LEFT JOIN grid g ON g.id = f.grid_id "
    "LEFT JOIN community cm ON cm.id = g.community_id"
)
# Every case a metric of P can count is reported in P, or filed before its end and not
# closed before its start (dispatch, feedback and close come after filing): one cheap test.
_RELEVANT = (
    "(f.reported_at >= :t0 AND f.reported_at < :t1) "
    "OR (f.filed_at < :t1 AND (f.closed_at IS NULL OR f.closed_at >= :t0))"
)
_HOURS = "date_part('epoch', f.closed_at - f.filed_at) / 3600.0"  # float8, not numeric
# Only the joins a grouping needs.
_JOINS: dict[str, str] = {
    "street": "LEFT JOIN grid g ON g.id = f.grid_id "
    "LEFT JOIN community cm ON cm.id = g.community_id",
    "community": "LEFT JOIN grid g ON g.id = f.grid_id",
}
# For the report, the close deadline at the end of P through a join (the few cases an
# extension moved at or after the end), not a subquery per row: the scan and the counts
# then run in parallel workers.
_MOVED = (
    "LEFT JOIN (SELECT DISTINCT ON (d.case_id) d.case_id, d.due_at FROM case_fact m "
    "JOIN case_fact_close_due d ON d.case_id = m.case_id AND d.from_at < :t1 "
    "WHERE m.close_changed_at >= :t1 ORDER BY d.case_id, d.from_at DESC, d.seq DESC) moved "
    "ON moved.case_id = f.case_id"
)
_DUE_REPORT = SETS["due"].replace(
    f"({_CLOSE_DUE_AT_END})",
    "(CASE WHEN f.close_changed_at IS NULL OR f.close_changed_at < :t1 "
    "THEN f.close_due ELSE moved.due_at END)")
# The flags of one case for P: the sets, and whether each step came in time.
_FLAGS = {
    "reported": SETS["reported"],
    "filed": SETS["filed"],
    "filed_ok": "f.filed_at <= f.file_due",
    "dispatched": SETS["dispatched"],
    "dispatched_ok": "f.dispatched_at <= f.dispatch_due",
    "returned": "f.returned_at < :t1",
    "fed_back": SETS["fed_back"],
    "fed_back_ok": "f.fed_back_at <= f.handle_due",
    "closed": SETS["closed"],
    "closed_ok": "f.closed_at <= f.close_due",
    "due": _DUE_REPORT,
    "reworked": "f.reworked_at < :t1",
}
_COUNT_OF = {
    "reported": "reported",
    "filed": "filed",
    "filed_timely": "filed AND filed_ok",
    "dispatched": "dispatched",
    "dispatched_timely": "dispatched AND dispatched_ok",
    "misrouted": "dispatched AND returned",
    "fed_back": "fed_back",
    "fed_back_ontime": "fed_back AND fed_back_ok",
    "closed": "closed",
    "closed_ontime": "closed AND closed_ok",
    "due": "due",
    "reworked": "due AND reworked",
}
WORK_MEM = "64MB"  # the medians' sort stays in memory


# For the report, the department of the cases re-dispatched after the end of P through a
# join too (a subquery per row would keep the counts out of the parallel workers).
_LEAD_THEN = (
    "LEFT JOIN (SELECT DISTINCT ON (l.case_id) l.case_id, "
    "(l.payload->>'department_id')::integer AS d FROM case_fact m "
    "JOIN case_log l ON l.case_id = m.case_id AND l.action IN ('dispatch', 'reassign') "
    "AND l.at < :t1 WHERE m.lead_at >= :t1 AND m.dispatched_at < :t1 "
    "ORDER BY l.case_id, l.seq DESC) lead_then ON lead_then.case_id = f.case_id"
)
_REPORT_KEY = {**_KEY, "department": (
    "CASE WHEN f.dispatched_at IS NULL OR f.dispatched_at >= :t1 THEN NULL "
    "WHEN f.lead_at < :t1 THEN f.lead_department_id ELSE lead_then.d END")}
_REPORT_JOINS = {**_JOINS, "department": _LEAD_THEN}


def _report_sql(by: str) -> str:
    """All metrics of all groups of ``by``: one statement, one (parallel) scan of the facts
    for the counts and one of the cases closed in P for the medians."""
    flags = ",\n".join(f"({cond}) AS {name}" for name, cond in _FLAGS.items())
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}"
                       for name, cond in _COUNT_OF.items())
    joins = _REPORT_JOINS.get(by, "")
    return f"""
WITH x AS (
    SELECT {_REPORT_KEY[by]} AS k, {_HOURS} AS hours, {flags}
      FROM case_fact f {joins} {_MOVED}
     WHERE {_RELEVANT}
), a AS (
    SELECT k, {counts}, avg(hours) FILTER (WHERE closed) AS handling_hours_mean
      FROM x GROUP BY k
), med AS (
    SELECT {_REPORT_KEY[by]} AS k,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY {_HOURS}) AS handling_hours_median
      FROM case_fact f {joins}
     WHERE {SETS["closed"]}
     GROUP BY 1
), grp AS ({_GROUPS[by]}),
am AS (SELECT a.*, med.handling_hours_median FROM a LEFT JOIN med ON med.k IS NOT DISTINCT FROM a.k)
SELECT grp.key, grp.name, am.* FROM grp LEFT JOIN am ON am.k = grp.id
UNION ALL
SELECT NULL, NULL, am.* FROM am WHERE am.k IS NULL
"""


def _read(engine: Engine, sql: str, params: dict):
    """One read-only statement with room for its sorts."""
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
        return conn.execute(text(sql), params).all()


# --- periods ------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end) as dates in the hall's time zone; ``end`` exclusive."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise BadInput(
                "结束日期须晚于开始日期（--to 不含当天）。",
                "The end date must be after the start date (--to is exclusive).",
            )
        if (self.end - self.start).days > 366 * 5:
            raise BadInput("统计区间最长五年。", "A period is at most five years long.")

    def bounds(self, clip: bool = False) -> tuple[datetime, datetime]:
        """The period's instants: midnight in the hall's time zone at both ends.

        ``clip``: a period still running ends now, as far as the data can tell (a case
        whose close deadline comes later today is not yet due).
        """
        tz = hall_timezone()
        t0 = datetime.combine(self.start, time(), tz).astimezone(UTC)
        t1 = datetime.combine(self.end, time(), tz).astimezone(UTC)
        if clip:
            t1 = max(t0, min(t1, datetime.now(UTC)))
        return t0, t1

    @classmethod
    def of(cls, kind: str, day: date) -> Period:
        """The day, week (Monday on), month, quarter or year holding ``day``."""
        if kind == "day":
            return cls(day, day + timedelta(days=1))
        if kind == "week":
            start = day - timedelta(days=day.weekday())
            return cls(start, start + timedelta(days=7))
        if kind == "month":
            start = day.replace(day=1)
        elif kind == "quarter":
            start = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
        elif kind == "year":
            start = day.replace(month=1, day=1)
        else:
            raise BadInput(f"未知周期“{kind}”。", f"Unknown period '{kind}'.")
        months = {"month": 1, "quarter": 3, "year": 12}[kind]
        y, m = divmod(start.month - 1 + months, 12)
        return cls(start, start.replace(year=start.year + y, month=m + 1))


def parse_date(value: str, option: str) -> date:
    """A ``YYYY-MM-DD`` date of the command line, or one clear line."""
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise BadInput(
            f"{option} 须为日期（YYYY-MM-DD），收到“{value}”。",
            f"{option} must be a date (YYYY-MM-DD), got '{value}'.",
        ) from None


def check_grouping(by: str) -> str:
    if by not in GROUPINGS:
        raise BadInput(
            f"未知分组“{by}”，可用：{', '.join(GROUPINGS)}。",
            f"Unknown grouping '{by}'; use one of {', '.join(GROUPINGS)}.",
        )
    return by


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise BadInput(
            f"未知指标“{metric}”，可用：{', '.join(METRICS)}。",
            f"Unknown metric '{metric}'; use one of {', '.join(METRICS)}.",
        )
    return metric


# --- the fold ---------------------------------------------------------------------------


def refresh(engine: Engine) -> int:
    """Fold the cases whose log grew since the last fold; how many were folded.

    The database does it (``grid_metrics_refresh``, any console may ask, it takes no
    arguments), one fold at a time; a console that asks while another folds waits and
    then finds nothing left to do.
    """
    with transaction(engine) as conn:
        return int(conn.execute(text("SELECT grid_metrics_refresh()")).scalar_one())


# --- reports ------------------------------------------------------------------------------


def rates(counts: dict) -> dict:
    """The rates of one group from its counts; ``None`` where the denominator is zero."""
    out = {}
    for rate, (num, den) in RATE_PARTS.items():
        d = counts.get(den) or 0
        if not d:
            out[rate] = None
        elif rate == "dispatch_accuracy":
            out[rate] = 1.0 - (counts.get(num) or 0) / d
        else:
            out[rate] = (counts.get(num) or 0) / d
    return out


def exact_mean(closed_us, hours_n) -> float | None:
    """Mean handling hours from the exact sum of microseconds (the rollup's), rounded once."""
    n = int(hours_n or 0)
    return int(closed_us or 0) / (n * 3_600_000_000) if n else None


def _row(r) -> dict:
    """A report row from the query's (a result row, or the rollup's dict)."""
    m = r._mapping if hasattr(r, "_mapping") else r
    counts = {name: int(m[name] or 0) for name in COUNTED}
    row = {"key": m["key"], "name": m["name"]}
    row.update({name: counts[name] for name in COUNTS})
    row.update(rates(counts))
    mean = (exact_mean(m["closed_us"], m["hours_n"]) if "closed_us" in m
            else m["handling_hours_mean"])
    median = m["handling_hours_median"]
    row["handling_hours_mean"] = None if mean is None else float(mean)
    row["handling_hours_median"] = None if median is None else float(median)
    row["fed_back"] = counts["fed_back"]
    row["parts"] = {name: counts[name] for name in COUNTED}
    return row


def default_rank(by: str) -> str:
    """What a grouping is ranked by unless told: workers by reports, the rest by 按期结案率."""
    return "reported" if by == "worker" else "ontime_closure"


def rank(rows: list[dict], metric: str) -> list[dict]:
    """Best first by ``metric`` (smallest first where lower is better), no data last.

    The rows outside every group (``key`` None: not yet dispatched, not reported by a
    grid worker) come after the ranked ones, without a rank.
    """
    asc = metric in ASCENDING

    def order(row: dict):
        value = None if row.get("key") is None else row.get(metric)
        missing = value is None
        sign = 1 if asc else -1
        return (row.get("key") is None, missing, 0 if missing else sign * value,
                -(row.get("closed") or 0), str(row.get("key") or "~"))

    ordered = sorted(rows, key=order)
    place, last = 0, object()
    for i, row in enumerate(ordered, start=1):
        value = None if row.get("key") is None else row.get(metric)
        if value is None:
            row["rank"] = None
            continue
        if value != last:
            place, last = i, value
        row["rank"] = place
    return ordered


PATHS = ("auto", "rollup", "direct")


def _counts_nothing(row: dict) -> bool:
    return not any(row["parts"].values()) and row["handling_hours_median"] is None


def _report_rows(engine: Engine, by: str, t0: datetime, t1: datetime, path: str) -> list[dict]:
    """The rows of one report: from the daily rollup (``db.kpi_rollup``) when its days are
    the hall's, else (or asked ``path="direct"``) by the direct query over the facts.

    The row outside every group (key None) is listed only when it counts something: the
    two paths agree on every group's figures, and on that row's presence only so.
    """
    if path not in PATHS:
        raise ValueError(path)
    params: dict = {"t0": t0, "t1": t1}
    if path != "direct":
        from db import kpi_rollup  # it builds on this module's conditions

        days = kpi_rollup.day_params(t0, t1)
        if path == "rollup" and (days is None or not kpi_rollup.usable(engine)):
            raise ValueError("the rollup's days are not the hall's")
        if days is not None and (path == "rollup" or kpi_rollup.usable(engine)):
            rows = [_row(r) for r in kpi_rollup.report_rows(engine, by, {**params, **days})]
            return [r for r in rows if r["key"] is not None or not _counts_nothing(r)]
    rows = [_row(r) for r in _read(engine, _report_sql(by), params)]
    return [r for r in rows if r["key"] is not None or not _counts_nothing(r)]


def report(
    engine: Engine, period: Period, by: str = "district", rank_by: str | None = None,
    fold: bool = True, path: str = "auto",
) -> dict:
    """Every metric for ``period`` grouped ``by``, ranked; one query (after the fold).

    The answer is what ``kpi --json`` prints: ``{"from", "to", "by", "rank_by", "rows"}``;
    each row carries ``parts`` too (the numerators and denominators of its rates).
    ``path``: ``"rollup"`` or ``"direct"`` to choose how (the same rows either way).
    """
    check_grouping(by)
    rank_by = check_metric(rank_by or default_rank(by))
    if fold:
        refresh(engine)
    t0, t1 = period.bounds(clip=True)
    rows = _report_rows(engine, by, t0, t1, path)
    for row in rows:
        row["rank"] = None
        if row["key"] is None:
            row["name"] = "未派遣" if by == "department" else "—"
    answer = {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "by": by,
        "rank_by": rank_by,
        "rows": rank(rows, rank_by) if by != "district" else rows,
    }
    if t1 < period.bounds()[1]:
        answer["as_of"] = t1.astimezone(hall_timezone()).isoformat()  # a period still running
    return answer


def reports(
    engine: Engine, period: Period, groupings=GROUPINGS, rank_by: str | None = None
) -> dict[str, dict]:
    """One report per grouping (the exports' sheets), after a single fold."""
    refresh(engine)
    return {by: report(engine, period, by, rank_by, fold=False) for by in groupings}


# --- the cases behind a number ---------------------------------------------------------

DRILL_SETS: tuple[str, ...] = tuple(SETS)
_KEY_OF: dict[str, str] = {
    "department": "SELECT id FROM department WHERE code = :key",
    "street": "SELECT id FROM street WHERE code = :key",
    "community": "SELECT id FROM community WHERE code = :key",
    "grid": "SELECT id FROM grid WHERE code = :key",
    "worker": "SELECT id FROM worker WHERE code = :key",
}


def cases_behind(
    engine: Engine, period: Period, which: str, by: str = "district", key: str | None = None,
    limit: int = 100_000, fold: bool = True,
) -> list[dict]:
    """The cases counted in ``which`` (a count, or e.g. ``closed_late``) for one group.

    ``key`` is the group's key as the report gives it (``None`` for the department
    group of cases not yet dispatched).  Answers ``[{"id", "number"}]`` by number.
    """
    check_grouping(by)
    if which not in SETS:
        raise BadInput(f"未知明细“{which}”。", f"Unknown drill-down '{which}'.")
    if fold:
        refresh(engine)
    t0, t1 = period.bounds(clip=True)
    params: dict = {"t0": t0, "t1": t1, "limit": int(limit), "key": key}
    if by == "district":
        group = "true"
    elif key is None:
        group = f"({_KEY[by]}) IS NULL"
    else:
        group = f"({_KEY[by]}) = ({_KEY_OF[by]})"
    sql = (
        f'SELECT f.case_id AS id, c.number FROM {_FROM} JOIN "case" c ON c.id = f.case_id '
        f"WHERE ({SETS[which]}) AND {group} ORDER BY c.number LIMIT :limit"
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


# --- trends --------------------------------------------------------------------------------


def bucket_edges(period: Period, bucket: str) -> list[datetime]:
    """The instants that cut ``period`` into days or hours of the hall's clock, up to now
    (the bucket now is in ends now; none after it)."""
    edges = _calendar_edges(period, bucket)
    now = datetime.now(UTC)
    past = [e for e in edges if e < now]
    if len(past) < len(edges):
        past.append(now)
    return past if len(past) >= 2 else []


def _calendar_edges(period: Period, bucket: str) -> list[datetime]:
    tz = hall_timezone()
    if bucket == "day":
        days = (period.end - period.start).days
        return [
            datetime.combine(period.start + timedelta(days=i), time(), tz).astimezone(UTC)
            for i in range(days + 1)
        ]
    if bucket == "hour":
        if (period.end - period.start).days > 31:
            raise BadInput("按小时的趋势最长 31 天。", "An hourly trend covers at most 31 days.")
        t0, t1 = period.bounds()
        out, t = [], t0
        while t < t1:
            out.append(t)
            t += timedelta(hours=1)
        return [*out, t1]
    raise BadInput(f"未知粒度“{bucket}”（day 或 hour）。",
                   f"Unknown bucket '{bucket}' (day or hour).")


# Per bucket j = [e[j], e[j+1]): the counts by when each step came (one scan per step,
# each a plain grouped count the planner runs in parallel), and the due cases by a
# difference array: a case whose close deadline D did not move during the trend is due
# exactly in the buckets lo..hi (lo = max(bucket(filed), min(bucket(closed),
# bucket(D))), hi = bucket(closed) or the last), so it adds +1 at lo and -1 after hi;
# the few whose deadline an extension moved during the trend are checked bucket by bucket.
_E = "CAST(:edges AS timestamptz[])"
_WB = "width_bucket({col}, " + _E + ")"
_IN_TREND = "{col} >= :e0 AND {col} < :en"


def _step_counts(kind: str, col: str, ok: str | None, extra: str = "") -> str:
    ok_count = f"count(*) FILTER (WHERE {ok})" if ok else "NULL::bigint"
    return (f"SELECT '{kind}' AS kind, {_WB.format(col=col)} AS b, count(*) AS n, "
            f"{ok_count} AS ok, {extra or 'NULL::float8 AS mean, NULL::float8 AS median'} "
            f"FROM case_fact f WHERE {_IN_TREND.format(col=col)} GROUP BY 2")


_LO = (f"greatest(1, {_WB.format(col='f.filed_at')}, least("
       f"coalesce({_WB.format(col='f.closed_at')}, 2147483647), "
       f"{_WB.format(col='f.close_due')}))")
_HI = f"least(:n, coalesce({_WB.format(col='f.closed_at')}, :n))"
_LO_BASE = _LO.replace("f.close_due", "f.close_base")
_STEADY = "(f.close_changed_at IS NULL OR f.close_changed_at < :e0)"
_CANDIDATE = "f.filed_at < :en AND (f.closed_at IS NULL OR f.closed_at >= :e0)"
_CLOSE_DUE_AT_E = _CLOSE_DUE_AT_END.replace(":t1", "e")
_TREND_SQL = " UNION ALL ".join([
    _step_counts("reported", "f.reported_at", None),
    _step_counts("filed", "f.filed_at", "f.filed_at <= f.file_due"),
    _step_counts("dispatched", "f.dispatched_at", "f.dispatched_at <= f.dispatch_due"),
    # misrouted: returned before the end of the bucket the case was dispatched in
    _step_counts("misrouted", "f.dispatched_at",
                 f"f.returned_at < ({_E})[{_WB.format(col='f.dispatched_at')} + 1]"),
    _step_counts("fed_back", "f.fed_back_at", "f.fed_back_at <= f.handle_due"),
    _step_counts("closed", "f.closed_at", "f.closed_at <= f.close_due",
                 f"avg({_HOURS}) AS mean, percentile_cont(0.5) WITHIN GROUP "
                 f"(ORDER BY {_HOURS}) AS median"),
    f"SELECT 'due+' AS kind, lo AS b, count(*) AS n, count(*) FILTER (WHERE lor <= hi) AS ok, "
    "NULL::float8, NULL::float8 FROM ("
    f"SELECT {_LO} AS lo, {_HI} AS hi, greatest({_LO}, "
    f"coalesce({_WB.format(col='f.reworked_at')}, 2147483647)) AS lor "
    f"FROM case_fact f WHERE {_CANDIDATE} AND {_STEADY}) d WHERE lo <= hi GROUP BY lo",
    f"SELECT 'due-', hi + 1, count(*), count(*) FILTER (WHERE lor <= hi), NULL::float8, "
    "NULL::float8 FROM ("
    f"SELECT {_LO} AS lo, {_HI} AS hi, greatest({_LO}, "
    f"coalesce({_WB.format(col='f.reworked_at')}, 2147483647)) AS lor "
    f"FROM case_fact f WHERE {_CANDIDATE} AND {_STEADY}) d WHERE lo <= hi GROUP BY hi",
    "SELECT 'due_lo+', lor, count(*), NULL::bigint, NULL::float8, NULL::float8 FROM ("
    f"SELECT {_LO} AS lo, {_HI} AS hi, greatest({_LO}, "
    f"coalesce({_WB.format(col='f.reworked_at')}, 2147483647)) AS lor "
    f"FROM case_fact f WHERE {_CANDIDATE} AND {_STEADY}) d WHERE lor <= hi GROUP BY lor",
    f"SELECT 'due_exact', j, count(*), count(*) FILTER (WHERE f.reworked_at < e), "
    "NULL::float8, NULL::float8 FROM case_fact f "
    f"CROSS JOIN LATERAL generate_series({_LO_BASE}, {_HI}) AS j "
    f"CROSS JOIN LATERAL (SELECT ({_E})[j] AS s, ({_E})[j + 1] AS e) AS bucket "
    f"WHERE {_CANDIDATE} AND NOT {_STEADY} AND f.filed_at < e "
    "AND (f.closed_at IS NULL OR f.closed_at >= s) "
    f"AND (f.closed_at < e OR ({_CLOSE_DUE_AT_E}) < e) GROUP BY j",
])


def trend(engine: Engine, period: Period, bucket: str = "day", fold: bool = True,
          path: str = "auto") -> list[dict]:
    """The district's metrics per day (or hour) of ``period``, each bucket a period of its own.

    Days come from the daily rollup when its days are the hall's (``db.kpi_rollup``);
    hours, or ``path="direct"``, from the facts directly.
    """
    if path not in PATHS:
        raise ValueError(path)
    edges = bucket_edges(period, bucket)
    if not edges:
        return []
    if fold:
        refresh(engine)
    return trend_rows(engine, edges, period.start, bucket == "day" and path != "direct",
                      path == "rollup")


def trend_rows(engine: Engine, edges: list[datetime], start: date, by_days: bool,
               rollup_only: bool = False) -> list[dict]:
    """The trend's buckets between ``edges`` (``by_days``: the days from ``start``, from
    the rollup when its days are the hall's)."""
    if by_days:
        from db import kpi_rollup

        usable = kpi_rollup.usable(engine)
        if rollup_only and not usable:
            raise ValueError("the rollup's days are not the hall's")
        days = kpi_rollup.daily(engine, edges, start) if usable else None
        if days is not None:
            return [_trend_row(edges[j], counts, counts.pop("median"))
                    for j, counts in enumerate(days)]
    n = len(edges) - 1
    found = _read(engine, _TREND_SQL, {"edges": edges, "e0": edges[0], "en": edges[-1], "n": n})
    per: dict[int, dict] = {b: {name: 0 for name in COUNTED} for b in range(1, n + 2)}
    hours: dict[int, tuple] = {}
    delta_due = [0] * (n + 2)
    delta_rework = [0] * (n + 2)
    for kind, b, count, ok, mean, median in found:
        if b is None or not 1 <= b <= n + 1:
            continue
        row = per[b]
        if kind in ("reported", "filed", "dispatched", "fed_back", "closed"):
            row[kind] = count
            if ok is not None:
                row[{"filed": "filed_timely", "dispatched": "dispatched_timely",
                     "fed_back": "fed_back_ontime", "closed": "closed_ontime"}[kind]] = ok
            if kind == "closed":
                hours[b] = (mean, median)
        elif kind == "misrouted":
            row["misrouted"] = ok
        elif kind == "due+":
            delta_due[b] += count
        elif kind == "due-":
            delta_due[b] -= count
            delta_rework[b] -= ok
        elif kind == "due_lo+":
            delta_rework[b] += count
        elif kind == "due_exact":
            row["due"] += count
            row["reworked"] += ok
    out, due, rework = [], 0, 0
    for b in range(1, n + 1):
        due += delta_due[b]
        rework += delta_rework[b]
        counts = per[b]
        counts["due"] += due
        counts["reworked"] += rework
        mean, median = hours.get(b, (None, None))
        out.append(_trend_row(edges[b - 1], counts, median, mean))
    return out


def _trend_row(start: datetime, counts: dict, median, mean=None) -> dict:
    """One bucket of a trend: its counts, rates and hours (the mean from the counts'
    exact microseconds when they carry them)."""
    row = {"start": start.astimezone(hall_timezone()).isoformat()}
    row.update({name: counts[name] for name in COUNTS})
    row.update(rates(counts))
    if "closed_us" in counts:
        mean = exact_mean(counts["closed_us"], counts["hours_n"])
    row["handling_hours_mean"] = None if mean is None else float(mean)
    row["handling_hours_median"] = None if median is None else float(median)
    row["fed_back"] = counts["fed_back"]
    return row


__all__ = [
    "GROUPINGS",
    "METRICS",
    "Period",
    "cases_behind",
    "rank",
    "refresh",
    "report",
    "reports",
    "trend",
]
