"""The shift handover (交接班): what the shift held, the notes, who took it over.

The report is read from the case log and the field-force tables for [start, end):
cases opened, closed, still open at the end, overdue at the end, escalated during
the shift, emergencies; gaps in the terminals' position stream, terminals that went
offline, cameras out of service.  The outgoing duty leader hands over with notes, the
incoming one acknowledges; both are written only by the database's own functions
(``grid_handover_submit`` / ``grid_handover_ack``, revision 0006), which need a duty
leader's session, and both go to ``handover_log``, hash-chained like the case log.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from db import validation as v
from db.clock import hall_timezone
from db.errors import BadInput, Forbidden, NotFound
from db.metrics import refresh
from db.session import bind, transaction
from db.users import Actor
from db.workflow import OPEN_STATUSES

MAX_NOTES = 4000
MAX_SHIFT_HOURS = 48
GATEWAY_GAP_MIN = 10  # minutes without a single fix that count as a gateway outage
LIST_LIMIT = 500

_CASES = """
SELECT c.id, c.number, c.status, c.severity, c.escalation, c.reported_at, c.closed_at,
       cat.name AS category, g.code AS grid, c.stage_due_at
  FROM "case" c JOIN category cat ON cat.id = c.category_id
  LEFT JOIN grid g ON g.id = c.grid_id
"""


def _rows(conn, sql: str, params: dict) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def check_shift(start: datetime, end: datetime) -> None:
    if end <= start or end - start > timedelta(hours=MAX_SHIFT_HOURS):
        raise BadInput(
            f"班次须为 0–{MAX_SHIFT_HOURS} 小时。",
            f"A shift is between 0 and {MAX_SHIFT_HOURS} hours long.",
        )


def shift_report(engine: Engine, start: datetime, end: datetime) -> dict:
    """Everything the incoming leader needs to know about [start, end)."""
    check_shift(start, end)
    refresh(engine)
    p = {"s": start, "e": end, "limit": LIST_LIMIT}
    with engine.connect() as conn:
        opened = _rows(conn, _CASES + " WHERE c.reported_at >= :s AND c.reported_at < :e "
                       "ORDER BY c.reported_at LIMIT :limit", p)
        closed = _rows(conn, _CASES + " JOIN case_fact f ON f.case_id = c.id "
                       "WHERE f.closed_at >= :s AND f.closed_at < :e "
                       "ORDER BY f.closed_at LIMIT :limit", p)
        # Open at the end: its status then (the last entry before the end) and the stage
        # deadline in force then (recorded by that entry; else the row's, if unchanged since).
        open_at_end = _rows(conn, """
            SELECT c.id, c.number, c.severity, cat.name AS category, g.code AS grid,
                   last.to_status AS status, last.escalation_level,
                   coalesce((last.payload->>'stage_due')::timestamptz,
                            CASE WHEN NOT EXISTS (SELECT 1 FROM case_log l2
                                                   WHERE l2.case_id = c.id AND l2.at >= :e)
                                 THEN c.stage_due_at END) AS stage_due_at
              FROM case_fact f JOIN "case" c ON c.id = f.case_id
              JOIN category cat ON cat.id = c.category_id
              LEFT JOIN grid g ON g.id = c.grid_id
             CROSS JOIN LATERAL (
                   SELECT l.to_status, l.payload,
                          (SELECT max((x.payload->>'level')::int) FROM case_log x
                            WHERE x.case_id = c.id AND x.at < :e
                              AND x.action IN ('escalate', 'auto_escalate')) AS escalation_level
                     FROM case_log l WHERE l.case_id = c.id AND l.at < :e
                    ORDER BY l.seq DESC LIMIT 1) AS last
             WHERE f.reported_at < :e AND (f.ended_at IS NULL OR f.ended_at >= :e)
             ORDER BY c.reported_at
        """, p)
        open_at_end = [r for r in open_at_end if r["status"] in OPEN_STATUSES]
        escalated = _rows(conn, """
            SELECT c.number, l.action, (l.payload->>'level')::int AS level, l.at, l.actor_name,
                   cat.name AS category
              FROM case_log l JOIN "case" c ON c.id = l.case_id
              JOIN category cat ON cat.id = c.category_id
             WHERE l.action IN ('escalate', 'auto_escalate') AND l.at >= :s AND l.at < :e
             ORDER BY l.at LIMIT :limit
        """, p)
        devices = conn.execute(text("SELECT count(*) FROM device")).scalar_one()
        minutes = [r[0] for r in conn.execute(text(
            "SELECT DISTINCT date_trunc('minute', ts) FROM positions "
            "WHERE ts >= :s AND ts < :e ORDER BY 1"), p)]
        offline = _rows(conn, """
            SELECT e.at, d.identifier AS device, w.code AS worker_code, w.name AS worker,
                   EXISTS (SELECT 1 FROM worker_event b WHERE b.device_id = e.device_id
                            AND b.kind = 'online' AND b.at > e.at AND b.at < :e) AS back
              FROM worker_event e JOIN device d ON d.id = e.device_id
              LEFT JOIN worker w ON w.id = e.worker_id
             WHERE e.kind = 'offline' AND e.at >= :s AND e.at < :e
             ORDER BY e.at LIMIT :limit
        """, p)
        cameras = _rows(conn, "SELECT code, name FROM camera WHERE NOT active ORDER BY code", p)
    overdue = [r for r in open_at_end if r["stage_due_at"] is not None and r["stage_due_at"] < end]
    emergencies = [r for r in opened if r["severity"] == "emergency"]
    seen = {r["number"] for r in emergencies}
    emergencies += [r for r in open_at_end if r["severity"] == "emergency"
                    and r["number"] not in seen]
    gaps = gateway_gaps(minutes, start, end) if devices else []
    counts = {
        "opened": len(opened),
        "closed": len(closed),
        "open_at_end": len(open_at_end),
        "overdue_at_end": len(overdue),
        "escalated": len(escalated),
        "emergencies": len(emergencies),
        "gateway_gaps": len(gaps),
        "terminals_offline": len(offline),
        "cameras_out": len(cameras),
    }
    return {
        "shift_start": start,
        "shift_end": end,
        "counts": counts,
        "opened": opened,
        "closed": closed,
        "open_at_end": open_at_end[:LIST_LIMIT],
        "overdue_at_end": overdue[:LIST_LIMIT],
        "escalated": escalated,
        "emergencies": emergencies,
        "gateway_gaps": gaps,
        "terminals_offline": offline,
        "cameras_out": cameras,
        "terminals": int(devices),
    }


def gateway_gaps(minutes: list[datetime], start: datetime, end: datetime,
                 gap_min: int = GATEWAY_GAP_MIN) -> list[dict]:
    """Spans of at least ``gap_min`` minutes in which no terminal's fix arrived.

    Fixes are counted by the minute they fall in, so the shift's edges are taken to
    the minute too (a shift starting at 08:00:40 starts in the minute 08:00).
    """
    start = start.replace(second=0, microsecond=0)
    end = end.replace(second=0, microsecond=0)
    gaps = []
    edge = start
    for m in [*minutes, end]:
        if m - edge >= timedelta(minutes=gap_min):
            gaps.append({"from": edge, "to": m,
                         "minutes": round((m - edge).total_seconds() / 60)})
        edge = max(edge, m + timedelta(minutes=1))
    return gaps


def summary_json(report: dict) -> dict:
    """The report as stored with a handover (JSON-ready)."""
    return json.loads(json.dumps(report, default=_iso, ensure_ascii=False))


def _iso(o):
    if isinstance(o, datetime):
        return o.astimezone(hall_timezone()).isoformat()
    return str(o)


def submit(engine: Engine, actor: Actor, start: datetime, end: datetime, notes: str,
           report: dict | None = None) -> int:
    """Hand the shift over (the outgoing duty leader); the handover's id."""
    check_shift(start, end)
    if actor.role != "leader":
        raise Forbidden("只有值班长可以交班。", "Only a duty leader hands a shift over.")
    notes = (notes or "").strip()
    if len(notes) > MAX_NOTES:
        raise BadInput(f"交班备注最多 {MAX_NOTES} 字。",
                       f"Handover notes are at most {MAX_NOTES} characters.")
    if v.has_controls(notes):  # Cc and Cf (C1 controls, bidi overrides), as every free text
        raise BadInput("交班备注含有控制字符。", "The notes contain control characters.")
    summary = summary_json(report if report is not None else shift_report(engine, start, end))
    with transaction(engine) as conn:
        bind(conn, actor, "handover")
        return int(conn.execute(
            text("SELECT grid_handover_submit(:s, :e, :n, CAST(:j AS jsonb), :w)"),
            {"s": start, "e": end, "n": notes, "j": json.dumps(summary, ensure_ascii=False),
             "w": actor.workstation or ""},
        ).scalar_one())


def acknowledge(engine: Engine, actor: Actor, handover_id: int | None = None,
                note: str = "") -> int:
    """Take the shift over (the incoming duty leader): the newest open handover by default."""
    if actor.role != "leader":
        raise Forbidden("只有值班长可以接班。", "Only a duty leader takes a shift over.")
    note = (note or "").strip()
    if len(note) > MAX_NOTES:
        raise BadInput(f"接班备注最多 {MAX_NOTES} 字。",
                       f"Notes are at most {MAX_NOTES} characters.")
    if v.has_controls(note):
        raise BadInput("接班备注含有控制字符。", "The notes contain control characters.")
    with transaction(engine) as conn:
        bind(conn, actor, "handover")
        if handover_id is None:
            handover_id = conn.execute(text(
                "SELECT id FROM shift_handover WHERE acknowledged_at IS NULL "
                "ORDER BY submitted_at DESC, id DESC LIMIT 1")).scalar()
            if handover_id is None:
                raise NotFound("没有待接班的交班记录。", "No handover is waiting to be taken over.")
        row = conn.execute(text(
            "SELECT outgoing_id, acknowledged_at FROM shift_handover WHERE id = :i"),
            {"i": handover_id}).first()
        if row is None:
            raise NotFound(f"交班记录 {handover_id} 不存在。", f"No handover {handover_id}.")
        if row.acknowledged_at is not None:
            raise BadInput("该交班已被接班确认。", "That handover is already acknowledged.")
        if row.outgoing_id == actor.id:
            raise BadInput("接班人须为另一位值班长。",
                           "The incoming leader is someone other than the outgoing one.")
        conn.execute(text("SELECT grid_handover_ack(:i, :n, :w)"),
                     {"i": handover_id, "n": note or None, "w": actor.workstation or ""})
    return int(handover_id)


def handovers(engine: Engine, limit: int = 20) -> list[dict]:
    """The newest handovers, open ones first."""
    with engine.connect() as conn:
        return _rows(conn, """
            SELECT id, shift_start, shift_end, notes, outgoing_name, submitted_at,
                   incoming_name, acknowledged_at, ack_note, summary->'counts' AS counts
              FROM shift_handover
             ORDER BY acknowledged_at IS NOT NULL, submitted_at DESC, id DESC LIMIT :n
        """, {"n": int(limit)})


def handover_log(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return _rows(conn, "SELECT seq, handover_id, action, actor_name, actor_role, "
                     "workstation, at, notes FROM handover_log ORDER BY seq", {})


_CHAIN = (
    "SELECT seq::text, handover_id::text, action, actor_id::text, actor_name, actor_role, "
    "workstation, (extract(epoch FROM at) * 1000000)::bigint::text, notes, payload::text, "
    "prev_hash, hash FROM handover_log ORDER BY seq"
)


def verify_chain(engine: Engine) -> int | None:
    """Recompute the handover log's chain here; the first entry that differs, or None."""
    prev = b""
    with engine.connect() as conn:
        for row in conn.exec_driver_sql(_CHAIN):
            parts = [("\\N" if row[i] is None and i in (3, 8) else (row[i] or ""))
                     for i in range(10)]
            content = "\x1f".join(parts).encode("utf-8")
            expected = hashlib.sha256(prev + content).digest()
            if bytes(row[10]) != prev or bytes(row[11]) != expected:
                return int(row[0])
            prev = expected
    return None
