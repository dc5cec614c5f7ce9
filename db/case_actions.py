"""One function per operator action on a case, each one transaction.

Every action follows the same path (``perform``):

1. check the input and the caller's role, before touching a row;
2. lock the case row (``SELECT … FOR UPDATE``) together with its time limits
   and the database clock;
3. compare the caller's expected version with the row's: a mismatch means
   someone else acted first, and the caller gets a ``Conflict`` naming who,
   what and when;
4. check the transition against ``db.workflow`` and the case's own
   conditions (is it this department's case, is an extension pending);
5. update the row (version + 1), append the case-log entry, whose trigger
   sends NOTIFY; commit.

The log entry is appended under a transaction-scoped advisory lock taken as
the last step before commit.  That makes log sequence order equal commit
order, which is what lets every listener catch up with ``seq > last_seen``
and never skip an entry that committed late.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from db import validation as v
from db.clock import hall_timezone
from db.errors import BadInput, Conflict, Forbidden, NotFound
from db.locate import grid_at, in_territory
from db.models import (
    Attachment,
    Case,
    CaseAssignment,
    CaseCounter,
    CaseLog,
    Category,
    Department,
    TimeLimit,
    Worker,
)
from db.session import bind, transaction, with_retry
from db.users import Actor
from db.workflow import (
    ACTIONS,
    OPEN_STATUSES,
    PAST_EN,
    REPORTING_WORKER_SOURCE,
    ROLE_LABELS,
    SEVERITIES,
    SOURCE_LABELS,
    SOURCES,
    STATUS_LABELS,
    Status,
    action_label,
    label,
    role_may,
    stage_of,
)

C = Case.__table__
L = CaseLog.__table__
A = CaseAssignment.__table__
T = TimeLimit.__table__
CAT = Category.__table__
D = Department.__table__
W = Worker.__table__
ATT = Attachment.__table__
CNT = CaseCounter.__table__

LOG_ORDER_LOCK = 0x6C6F67  # "log": serialises log appends so seq order = commit order
EVALUATIONS = ("satisfied", "basically_satisfied", "dissatisfied")


@dataclass(frozen=True)
class ActionResult:
    """What an action left behind: the case's new status and version, and its log entry."""

    case_id: int
    number: str
    action: str
    status: str
    version: int
    seq: int


@dataclass
class Change:
    """What a handler decided: new column values, target status, log details."""

    values: dict = field(default_factory=dict)
    to_status: str | None = None
    reason: str | None = None
    payload: dict = field(default_factory=dict)
    after: list[Callable[[Connection], None]] = field(default_factory=list)


@dataclass
class Ctx:
    """The locked case row, the acting user, the cleaned parameters and the clock."""

    conn: Connection
    actor: Actor
    row: object
    params: dict
    now: datetime


# --- entry point -------------------------------------------------------------


def perform(
    engine: Engine,
    actor: Actor,
    action: str,
    number: str | None = None,
    expected_version: int | None = None,
    **params,
) -> ActionResult:
    """Take ``action`` on case ``number`` as ``actor``; one transaction, all or nothing."""
    rule = ACTIONS.get(action)
    if rule is None:
        raise BadInput(f"未知操作“{action}”。", f"Unknown action '{action}'.")
    if not role_may(actor.role, action):
        role_zh = label(ROLE_LABELS, actor.role)
        raise Forbidden(
            f"{role_zh}无权执行“{action_label(action)}”。",
            f"The {label(ROLE_LABELS, actor.role, 'en')} role may not "
            f"{action_label(action, 'en')}.",
        )
    clean = _CLEANERS.get(action, _no_params)(params)
    if action == "report":
        return with_retry(lambda: _report(engine, actor, clean))
    if not number:
        raise BadInput("请指定案件编号。", "A case number is required.")
    if expected_version is None:
        raise BadInput(
            "请提供案件版本号（防止覆盖他人的操作）。",
            "The case's expected version is required (so no one's action is overwritten).",
        )
    return with_retry(lambda: _act(engine, actor, rule, action, number, expected_version, clean))


def _act(engine, actor, rule, action, number, expected_version, clean) -> ActionResult:
    with transaction(engine) as conn:
        bind(conn, actor, action)
        row = _lock_case(conn, number)
        if row.version != expected_version:
            raise Conflict(*_conflict_message(conn, row))
        if row.status not in rule.from_statuses:
            raise BadInput(*_wrong_state_message(conn, row, action))
        ctx = Ctx(conn, actor, row, clean, row.now)
        change = _HANDLERS[action](ctx)
        return _commit(ctx, action, change)


# --- the common path ---------------------------------------------------------


_LOCK_CASE = (
    select(
        C,
        T.c.accept_h,
        T.c.file_h,
        T.c.dispatch_h,
        T.c.handle_h,
        T.c.verify_h,
        T.c.close_h,
        func.now().label("now"),
    )
    .select_from(
        C.outerjoin(T, and_(T.c.category_id == C.c.category_id, T.c.severity == C.c.severity))
    )
    .where(C.c.number == bindparam("number"))
    .with_for_update(of=C)
)

# The two statements every action ends with, written once at driver level:
# they run hundreds of times a second in a busy hall, and building them
# through the expression layer each time costs more than the database does.
_CASE_COLUMNS = frozenset(C.c.keys())
_APPEND_LOG = (
    "WITH ordered AS (SELECT pg_advisory_xact_lock(%(lock)s)) "
    "INSERT INTO case_log (case_id, case_number, action, from_status, to_status, "
    "case_version, actor_id, actor_name, actor_role, workstation, reason, payload) "
    "SELECT %(case_id)s, %(number)s, %(action)s, %(from_status)s, %(to_status)s, "
    "%(version)s, %(actor_id)s, %(actor_name)s, %(actor_role)s, %(workstation)s, "
    "%(reason)s, %(payload)s FROM ordered RETURNING seq"
)


def _lock_case(conn: Connection, number: str):
    row = conn.execute(_LOCK_CASE, {"number": str(number)}).first()
    if row is None:
        raise NotFound(f"案件“{number}”不存在。", f"No case numbered '{number}'.")
    return row


def _update_case(conn: Connection, case_id: int, values: dict) -> None:
    unknown = set(values) - _CASE_COLUMNS
    if unknown:  # a programming error, never operator input
        raise ValueError(f"not case columns: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = %({name})s" for name in values)
    conn.exec_driver_sql(
        f'UPDATE "case" SET {assignments} WHERE id = %(_id)s', {**values, "_id": case_id}
    )


def _commit(ctx: Ctx, action: str, change: Change) -> ActionResult:
    row, conn = ctx.row, ctx.conn
    to_status = change.to_status or row.status
    values = dict(change.values)
    values.update(status=str(to_status), version=row.version + 1, updated_at=ctx.now)
    _update_case(conn, row.id, values)
    for step in change.after:
        step(conn)
    seq = append_log(
        conn,
        ctx.actor,
        row.id,
        row.number,
        action,
        row.status,
        to_status,
        row.version + 1,
        change.reason,
        change.payload,
    )
    return ActionResult(row.id, row.number, action, to_status, row.version + 1, seq)


def append_log(
    conn: Connection,
    actor: Actor,
    case_id: int,
    number: str,
    action: str,
    from_status: str | None,
    to_status: str,
    version: int,
    reason: str | None,
    payload: dict,
) -> int:
    """Append one case-log entry, last thing before commit, under the order lock."""
    params = {
        "lock": LOG_ORDER_LOCK,
        "case_id": case_id,
        "number": number,
        "action": action,
        "from_status": None if from_status is None else str(from_status),
        "to_status": str(to_status),
        "version": version,
        "actor_id": actor.id,
        "actor_name": actor.display_name,
        "actor_role": actor.role,
        "workstation": actor.workstation or "",
        "reason": reason,
        "payload": json.dumps(payload, ensure_ascii=False, default=str),
    }
    return conn.exec_driver_sql(_APPEND_LOG, params).scalar_one()


def _stage(row, status: str, now: datetime, limits=None) -> dict:
    """Stage start and deadline columns for a case entering ``status``."""
    stage = stage_of(status)
    source = limits if limits is not None else row
    hours = getattr(source, f"{stage}_h", None) if stage else None
    due = now + timedelta(hours=hours) if hours is not None else None
    return {"stage_started_at": now, "stage_due_at": due}


def format_time(ts: datetime) -> str:
    local = ts.astimezone(hall_timezone())
    today = datetime.now(hall_timezone()).date()
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%m-%d %H:%M")


def _last_entry(conn: Connection, case_id: int):
    return conn.execute(
        select(L.c.action, L.c.actor_name, L.c.at)
        .where(L.c.case_id == case_id)
        .order_by(L.c.seq.desc())
        .limit(1)
    ).first()


def _conflict_message(conn: Connection, row) -> tuple[str, str]:
    last = _last_entry(conn, row.id)
    if last is None:
        return (
            "案件已被他人修改，请刷新后重试。",
            "The case was changed by someone else; reload it.",
        )
    when = format_time(last.at)
    return (
        f"案件 {row.number} 已被 {last.actor_name} 于 {when} {action_label(last.action)}，"
        "请查看最新状态后再操作。",
        f"Case {row.number} was already {PAST_EN.get(last.action, last.action)} by "
        f"{last.actor_name} at {when}; check its current state first.",
    )


def _wrong_state_message(conn: Connection, row, action: str) -> tuple[str, str]:
    last = _last_entry(conn, row.id)
    who = ""
    who_en = ""
    if last is not None:
        who = f"（{last.actor_name} 于 {format_time(last.at)} {action_label(last.action)}）"
        who_en = f" ({PAST_EN.get(last.action, last.action)} by {last.actor_name})"
    return (
        f"案件 {row.number} 当前为“{label(STATUS_LABELS, row.status)}”{who}，"
        f"不能{action_label(action)}。",
        f"Case {row.number} is {label(STATUS_LABELS, row.status, 'en')}{who_en}; "
        f"it cannot be {PAST_EN.get(action, action)} now.",
    )


# --- parameter cleaning (before any row is touched) ---------------------------


def _no_params(params: dict) -> dict:
    return {"note": v.text_field(params.get("note"), "reason", v.MAX_REASON)}


def _reason_required(params: dict) -> dict:
    return {"reason": v.text_field(params.get("reason"), "reason", v.MAX_REASON, required=True)}


def _clean_report(p: dict) -> dict:
    lon, lat = v.coordinates(p.get("lon"), p.get("lat"))
    source = p.get("source") or "patrol"
    if source not in SOURCES:
        raise BadInput(f"未知来源“{source}”。", f"Unknown source '{source}'.")
    severity = p.get("severity") or "normal"
    if severity not in SEVERITIES:
        raise BadInput(f"未知紧急程度“{severity}”。", f"Unknown severity '{severity}'.")
    category = p.get("category")
    if not isinstance(category, str) or not category.strip():
        raise BadInput("请选择问题类别。", "A category is required.")
    worker = p.get("worker")
    worker = str(worker).strip() if worker not in (None, "") else None
    if worker is not None and (len(worker) > 40 or not worker.isprintable()):
        raise BadInput("网格员编号无效。", "That is not a worker code.")  # one line, always
    if worker is not None and source != REPORTING_WORKER_SOURCE:
        raise BadInput(
            f"只有来源为“{label(SOURCE_LABELS, REPORTING_WORKER_SOURCE)}”的案件才记录上报网格员。",
            f"A reporting worker goes only with the source '{REPORTING_WORKER_SOURCE}' "
            f"({label(SOURCE_LABELS, REPORTING_WORKER_SOURCE, 'en')}).",
        )
    return {
        "lon": lon,
        "lat": lat,
        "source": source,
        "severity": severity,
        "category": category.strip()[:40],
        "description": v.text_field(
            p.get("description"), "description", v.MAX_DESCRIPTION, required=True
        ),
        "address": v.text_field(p.get("address"), "address", v.MAX_ADDRESS),
        "reporter": v.text_field(p.get("reporter"), "reporter", v.MAX_NAME),
        "reporter_phone": v.text_field(p.get("reporter_phone"), "reporter_phone", 30),
        "onsite": bool(p.get("onsite")),
        "attachments": v.attachments(p.get("attachments")),
        "worker": worker,
    }


def _clean_dispatch(p: dict) -> dict:
    co = p.get("co_departments") or []
    if isinstance(co, str):
        co = [co]
    return {
        "department": p.get("department"),
        "co_departments": [str(c) for c in co],
        "worker": p.get("worker"),
        "note": v.text_field(p.get("note"), "reason", v.MAX_REASON),
        "reason": v.text_field(p.get("reason"), "reason", v.MAX_REASON),
    }


def _clean_reassign(p: dict) -> dict:
    out = _clean_dispatch(p)
    out["reason"] = v.text_field(p.get("reason"), "reason", v.MAX_REASON, required=True)
    return out


def _clean_merge(p: dict) -> dict:
    into = p.get("into")
    if not isinstance(into, str) or not into.strip():
        raise BadInput("请指定要合并到的案件编号。", "Name the case to merge into.")
    return {"into": into.strip(), "reason": v.text_field(p.get("reason"), "reason", v.MAX_REASON)}


def _clean_file(p: dict) -> dict:
    severity = p.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise BadInput(f"未知紧急程度“{severity}”。", f"Unknown severity '{severity}'.")
    return {
        "category": p.get("category"),
        "severity": severity,
        "note": v.text_field(p.get("note"), "reason", v.MAX_REASON),
    }


def _clean_feedback(p: dict) -> dict:
    evidence = v.text_field(p.get("evidence"), "evidence", v.MAX_DESCRIPTION)
    files = v.attachments(p.get("attachments"))
    if not evidence and not files:
        raise BadInput(
            "反馈须附处置说明或照片。", "Feedback needs a description of the work or a photo."
        )
    return {"evidence": evidence, "attachments": files}


def _clean_escalate(p: dict) -> dict:
    level = p.get("level")
    if level is not None:
        try:
            level = int(level)
        except (TypeError, ValueError):
            level = -1
        if level not in (1, 2):
            raise BadInput(
                "督办级别须为 1（督办）或 2（挂牌督办）。",
                "The escalation level is 1 (supervised) or 2 (red card).",
            )
    return {"level": level, "reason": v.text_field(p.get("reason"), "reason", v.MAX_REASON)}


def _clean_request_extension(p: dict) -> dict:
    return {
        "hours": v.hours(p.get("hours")),
        "reason": v.text_field(p.get("reason"), "reason", v.MAX_REASON, required=True),
    }


def _clean_approve_extension(p: dict) -> dict:
    approved = p.get("approved", True)
    if isinstance(approved, str):
        approved = approved.lower() not in ("0", "false", "no", "reject")
    return {
        "approved": bool(approved),
        "reason": v.text_field(p.get("reason"), "reason", v.MAX_REASON),
    }


def _clean_archive(p: dict) -> dict:
    evaluation = p.get("evaluation")
    if evaluation is not None and evaluation not in EVALUATIONS:
        raise BadInput(
            f"评价须为 {', '.join(EVALUATIONS)} 之一。",
            f"The evaluation is one of {', '.join(EVALUATIONS)}.",
        )
    return {"evaluation": evaluation, "note": v.text_field(p.get("note"), "reason", v.MAX_REASON)}


_CLEANERS: dict[str, Callable[[dict], dict]] = {
    "report": _clean_report,
    "reject": _reason_required,
    "merge": _clean_merge,
    "file": _clean_file,
    "dispatch": _clean_dispatch,
    "return": _reason_required,
    "feedback": _clean_feedback,
    "verify_fail": _reason_required,
    "close": _reason_required,
    "archive": _clean_archive,
    "escalate": _clean_escalate,
    "request_extension": _clean_request_extension,
    "approve_extension": _clean_approve_extension,
    "reassign": _clean_reassign,
}


# --- lookups inside the transaction ------------------------------------------


def _category(conn: Connection, code: str):
    row = conn.execute(
        select(CAT.c.id, CAT.c.parent_id, CAT.c.default_department_id).where(CAT.c.code == code)
    ).first()
    if row is None:
        raise BadInput(f"未知问题类别“{code}”。", f"Unknown category '{code}'.")
    if row.parent_id is None:
        raise BadInput(
            f"“{code}”是大类，请选择具体小类。",
            f"'{code}' is a class; choose one of its sub-categories.",
        )
    return row


def _department_id(conn: Connection, code) -> int:
    found = conn.execute(
        select(D.c.id).where(and_(D.c.code == str(code), D.c.active.is_(True)))
    ).scalar()
    if found is None:
        raise BadInput(f"未知处置单位“{code}”。", f"Unknown department '{code}'.")
    return found


def _worker_id(conn: Connection, code) -> int | None:
    if code in (None, ""):
        return None
    found = conn.execute(select(W.c.id).where(W.c.code == str(code))).scalar()
    if found is None:
        raise BadInput(f"未知网格员“{code}”。", f"Unknown worker '{code}'.")
    return found


def _reporting_worker_id(conn: Connection, code: str | None) -> int | None:
    """The active grid worker ``code`` who reports a case (None without one).

    Unlike a dispatch's worker, a reporter must be on the roster now: the ranking by
    worker (docs/DOMAIN.md, Evaluation) credits the case to them, so a retired or
    mistyped code is refused rather than recorded.
    """
    if code is None:
        return None
    found = conn.execute(select(W.c.id, W.c.active).where(W.c.code == code)).first()
    if found is None:
        raise BadInput(f"未知网格员“{code}”。", f"Unknown worker '{code}'.")
    if not found.active:
        raise BadInput(f"网格员“{code}”已停用，不能作为上报人。",
                       f"Worker '{code}' is inactive and cannot be the reporter.")
    return found.id


def _limits(conn: Connection, category_id: int, severity: str):
    row = conn.execute(
        select(T).where(and_(T.c.category_id == category_id, T.c.severity == severity))
    ).first()
    if row is None:
        raise BadInput(
            "该类别未配置处置时限，请联系管理员。",
            "No time limits are configured for this category; ask an administrator.",
        )
    return row


def _own_assignment(ctx: Ctx):
    """This department's assignment on the case, or Forbidden."""
    row = ctx.conn.execute(
        select(A).where(
            and_(A.c.case_id == ctx.row.id, A.c.department_id == ctx.actor.department_id)
        )
    ).first()
    if row is None:
        raise Forbidden(
            f"案件 {ctx.row.number} 未派给贵单位。",
            f"Case {ctx.row.number} is not assigned to your department.",
        )
    return row


def _store_attachments(case_id: int, files, actor: Actor) -> Callable[[Connection], None]:
    def store(conn: Connection) -> None:
        if files:
            conn.execute(
                insert(ATT),
                [
                    {
                        "case_id": case_id,
                        "filename": f.filename,
                        "mime": f.mime,
                        "size": len(f.data),
                        "sha256": f.sha256,
                        "data": f.data,
                        "uploaded_by": actor.display_name,
                    }
                    for f in files
                ],
            )

    return store


# --- report (creates the case) -------------------------------------------------


def _report(engine: Engine, actor: Actor, p: dict) -> ActionResult:
    with transaction(engine) as conn:
        bind(conn, actor, "report")
        reporter_worker_id = _reporting_worker_id(conn, p["worker"])
        cat = _category(conn, p["category"])
        limits = _limits(conn, cat.id, p["severity"])
        if not in_territory(conn, p["lon"], p["lat"]):
            raise BadInput(
                f"位置（{p['lon']:.6f}, {p['lat']:.6f}）不在辖区内。",
                f"The location ({p['lon']:.6f}, {p['lat']:.6f}) is outside the district.",
            )
        grid_id = grid_at(conn, p["lon"], p["lat"])
        tz = hall_timezone().key
        day, n, now = conn.execute(
            text(
                "INSERT INTO case_counter (day, n) VALUES "
                "(to_char(now() AT TIME ZONE :tz, 'YYYYMMDD'), 1) "
                "ON CONFLICT (day) DO UPDATE SET n = case_counter.n + 1 "
                "RETURNING day, n, now()"
            ),
            {"tz": tz},
        ).one()
        number = f"{day}-{n:05d}"
        status = Status.AWAITING_VERIFICATION if p["onsite"] else Status.REPORTED
        values = {
            "number": number,
            "source": p["source"],
            "category_id": cat.id,
            "severity": p["severity"],
            "lon": p["lon"],
            "lat": p["lat"],
            "grid_id": grid_id,
            "address": p["address"],
            "description": p["description"],
            "reporter": p["reporter"],
            "reporter_phone": p["reporter_phone"],
            "status": status,
            "onsite": p["onsite"],
            "reported_at": now,
            "reporter_worker_id": reporter_worker_id,
            "version": 1,
            "updated_at": now,
            **_stage(None, status, now, limits),
        }
        if p["onsite"]:
            # Handled on the spot: it is a filed case that waits only for verification.
            values.update(
                filed_at=now, feedback_at=now, close_due_at=now + timedelta(hours=limits.close_h)
            )
        case_id = conn.execute(insert(C).values(**values).returning(C.c.id)).scalar_one()
        _store_attachments(case_id, p["attachments"], actor)(conn)
        payload = {
            "category": p["category"],
            "severity": p["severity"],
            "source": p["source"],
            "onsite": p["onsite"],
            "attachments": len(p["attachments"]),
        }
        if p["worker"] is not None:
            payload["worker"] = p["worker"]
        seq = append_log(conn, actor, case_id, number, "report", None, status, 1, None, payload)
    return ActionResult(case_id, number, "report", status, 1, seq)


# --- handlers: one per action on an existing case -----------------------------


def _accept(ctx: Ctx) -> Change:
    return Change(
        _stage(ctx.row, Status.ACCEPTED, ctx.now), Status.ACCEPTED, ctx.params["note"] or None
    )


def _reject(ctx: Ctx) -> Change:
    return Change(
        {"stage_due_at": None, "closed_at": ctx.now}, Status.REJECTED, ctx.params["reason"]
    )


def _merge(ctx: Ctx) -> Change:
    into = ctx.params["into"]
    if into == ctx.row.number:
        raise BadInput("不能把案件合并到它自己。", "A case cannot be merged into itself.")
    # Locked, so its status is still true at commit: A→B and B→C merged at once
    # must not leave A merged into a case that is itself merged (the second to lock
    # waits, then sees B merged and is refused).  A→B against B→A deadlocks
    # instead, and the victim's retry (``with_retry``) is refused the same way.
    target = ctx.conn.execute(
        select(C.c.id, C.c.status).where(C.c.number == into).with_for_update()
    ).first()
    if target is None:
        raise NotFound(f"案件“{into}”不存在。", f"No case numbered '{into}'.")
    if target.status in (Status.MERGED, Status.REJECTED):
        raise BadInput(
            f"案件 {into} 已{label(STATUS_LABELS, target.status)}，不能作为合并目标。",
            f"Case {into} is {target.status}; merge into an open case instead.",
        )
    return Change(
        {"merged_into_id": target.id, "stage_due_at": None, "closed_at": ctx.now},
        Status.MERGED,
        ctx.params["reason"] or None,
        {"into": into},
    )


def _file(ctx: Ctx) -> Change:
    row, conn = ctx.row, ctx.conn
    values: dict = {}
    payload: dict = {}
    category_id, severity = row.category_id, row.severity
    if ctx.params["category"]:
        category_id = _category(conn, str(ctx.params["category"])).id
        values["category_id"] = category_id
        payload["category"] = ctx.params["category"]
    if ctx.params["severity"]:
        severity = ctx.params["severity"]
        values["severity"] = severity
        payload["severity"] = severity
    limits = _limits(conn, category_id, severity)
    values.update(_stage(row, Status.FILED, ctx.now, limits))
    values.update(filed_at=ctx.now, close_due_at=ctx.now + timedelta(hours=limits.close_h))
    return Change(values, Status.FILED, ctx.params["note"] or None, payload)


def _assign(ctx: Ctx) -> tuple[dict, dict, Callable[[Connection], None]]:
    """Resolve departments and worker for dispatch/reassign; rows written after update."""
    conn, row, p = ctx.conn, ctx.row, ctx.params
    if p["department"]:
        lead = _department_id(conn, p["department"])
    else:
        lead = conn.execute(
            select(CAT.c.default_department_id).where(CAT.c.id == row.category_id)
        ).scalar()
        if lead is None:
            raise BadInput(
                "该类别没有默认处置单位，请指定。",
                "This category has no default department; choose one.",
            )
    co = [_department_id(conn, c) for c in p["co_departments"]]
    co = [d for d in dict.fromkeys(co) if d != lead]
    worker = _worker_id(conn, p["worker"])
    now = ctx.now

    def write(conn: Connection) -> None:
        conn.execute(delete(A).where(A.c.case_id == row.id))
        conn.execute(
            insert(A),
            [
                {"case_id": row.id, "department_id": d, "is_lead": d == lead, "assigned_at": now}
                for d in [lead, *co]
            ],
        )

    values = {
        "department_id": lead,
        "worker_id": worker,
        "dispatched_at": now,
        **_stage(row, Status.DISPATCHED, now),
    }
    payload = {"department_id": lead, "co_department_ids": co, "worker_id": worker}
    return values, payload, write


def _dispatch(ctx: Ctx) -> Change:
    values, payload, write = _assign(ctx)
    return Change(
        values,
        Status.DISPATCHED,
        ctx.params["note"] or ctx.params["reason"] or None,
        payload,
        [write],
    )


def _reassign(ctx: Ctx) -> Change:
    values, payload, write = _assign(ctx)
    return Change(values, Status.DISPATCHED, ctx.params["reason"], payload, [write])


def _acknowledge(ctx: Ctx) -> Change:
    mine = _own_assignment(ctx)
    if mine.acknowledged_at is not None:
        raise BadInput(
            f"贵单位已于 {format_time(mine.acknowledged_at)} 签收该案件。",
            f"Your department acknowledged it at {format_time(mine.acknowledged_at)}.",
        )
    case_id, dept, now = ctx.row.id, ctx.actor.department_id, ctx.now

    def ack(conn: Connection) -> None:
        conn.execute(
            update(A)
            .where(and_(A.c.case_id == case_id, A.c.department_id == dept))
            .values(acknowledged_at=now)
        )

    return Change(
        {}, Status.IN_PROGRESS, ctx.params["note"] or None, {"department_id": dept}, [ack]
    )


def _return(ctx: Ctx) -> Change:
    _own_assignment(ctx)
    case_id = ctx.row.id

    def clear(conn: Connection) -> None:
        conn.execute(delete(A).where(A.c.case_id == case_id))

    values = {
        "department_id": None,
        "worker_id": None,
        "return_count": ctx.row.return_count + 1,
        **_stage(ctx.row, Status.FILED, ctx.now),
    }
    return Change(
        values,
        Status.FILED,
        ctx.params["reason"],
        {"department_id": ctx.actor.department_id},
        [clear],
    )


def _feedback(ctx: Ctx) -> Change:
    mine = _own_assignment(ctx)
    if mine.fed_back_at is not None:
        raise BadInput(
            "贵单位已反馈，等待核查或其他协办单位。", "Your department has already fed back."
        )
    conn, row, now = ctx.conn, ctx.row, ctx.now
    pending = conn.execute(
        select(func.count())
        .select_from(A)
        .where(
            and_(
                A.c.case_id == row.id,
                A.c.fed_back_at.is_(None),
                A.c.department_id != ctx.actor.department_id,
            )
        )
    ).scalar_one()
    dept = ctx.actor.department_id

    def record(conn: Connection) -> None:
        conn.execute(
            update(A)
            .where(and_(A.c.case_id == row.id, A.c.department_id == dept))
            .values(
                fed_back_at=now,
                feedback=ctx.params["evidence"],
                acknowledged_at=func.coalesce(A.c.acknowledged_at, now),
            )
        )

    payload = {
        "department_id": dept,
        "evidence": ctx.params["evidence"],
        "attachments": len(ctx.params["attachments"]),
        "waiting_for": pending,
    }
    after = [record, _store_attachments(row.id, ctx.params["attachments"], ctx.actor)]
    if pending:
        # Joint handling: the case waits for every co-handling department.
        return Change({}, Status.IN_PROGRESS, None, payload, after)
    values = {"feedback_at": now, **_stage(row, Status.AWAITING_VERIFICATION, now)}
    return Change(values, Status.AWAITING_VERIFICATION, None, payload, after)


def _verify_pass(ctx: Ctx) -> Change:
    return Change(
        {"closed_at": ctx.now, "stage_due_at": None}, Status.CLOSED, ctx.params["note"] or None
    )


def _verify_fail(ctx: Ctx) -> Change:
    case_id = ctx.row.id

    def reset(conn: Connection) -> None:
        conn.execute(
            update(A)
            .where(A.c.case_id == case_id)
            .values(acknowledged_at=None, fed_back_at=None, feedback=None)
        )

    values = {
        "rework_count": ctx.row.rework_count + 1,
        "feedback_at": None,
        **_stage(ctx.row, Status.DISPATCHED, ctx.now),
    }
    return Change(values, Status.DISPATCHED, ctx.params["reason"], {}, [reset])


def _close(ctx: Ctx) -> Change:
    return Change(
        {"closed_at": ctx.now, "stage_due_at": None},
        Status.CLOSED,
        ctx.params["reason"],
        {"forced": True},
    )


def _archive(ctx: Ctx) -> Change:
    return Change(
        {"evaluation": ctx.params["evaluation"]},
        Status.ARCHIVED,
        ctx.params["note"] or None,
        {"evaluation": ctx.params["evaluation"]},
    )


def _escalate(ctx: Ctx) -> Change:
    current = ctx.row.escalation
    level = ctx.params["level"] or min(current + 1, 2)
    if level <= current:
        raise BadInput(
            f"案件 {ctx.row.number} 已是{'挂牌督办' if current == 2 else '督办'}。",
            f"Case {ctx.row.number} is already escalated to level {current}.",
        )
    return Change(
        {"escalation": level},
        None,
        ctx.params["reason"] or None,
        {"level": level, "previous": current},
    )


def _request_extension(ctx: Ctx) -> Change:
    _own_assignment(ctx)
    if ctx.row.extension_pending_h is not None:
        raise BadInput("已有待审批的延期申请。", "An extension request is already pending.")
    return Change(
        {"extension_pending_h": ctx.params["hours"]},
        None,
        ctx.params["reason"],
        {"hours": ctx.params["hours"]},
    )


def _approve_extension(ctx: Ctx) -> Change:
    row = ctx.row
    if row.extension_pending_h is None:
        raise BadInput(
            "该案件没有待审批的延期申请。", "This case has no pending extension request."
        )
    h = row.extension_pending_h
    values: dict = {"extension_pending_h": None}
    if ctx.params["approved"]:
        delta = timedelta(hours=h)
        values.update(
            extended_h=row.extended_h + h,
            stage_due_at=row.stage_due_at + delta if row.stage_due_at else None,
            close_due_at=row.close_due_at + delta if row.close_due_at else None,
        )
    return Change(
        values, None, ctx.params["reason"] or None, {"hours": h, "approved": ctx.params["approved"]}
    )


_HANDLERS: dict[str, Callable[[Ctx], Change]] = {
    "accept": _accept,
    "reject": _reject,
    "merge": _merge,
    "file": _file,
    "dispatch": _dispatch,
    "acknowledge": _acknowledge,
    "return": _return,
    "feedback": _feedback,
    "verify_pass": _verify_pass,
    "verify_fail": _verify_fail,
    "close": _close,
    "archive": _archive,
    "escalate": _escalate,
    "request_extension": _request_extension,
    "approve_extension": _approve_extension,
    "reassign": _reassign,
}


# --- one function per action, for callers that prefer names to strings --------


def _named(action: str):
    def act(
        engine: Engine,
        actor: Actor,
        number: str | None = None,
        expected_version: int | None = None,
        **params,
    ) -> ActionResult:
        return perform(engine, actor, action, number, expected_version, **params)

    act.__name__ = action
    act.__doc__ = (
        f"{action_label(action, 'en').capitalize()} ({action_label(action)}): see ``perform``."
    )
    return act


report = _named("report")
accept = _named("accept")
reject = _named("reject")
merge = _named("merge")
file_case = _named("file")
dispatch = _named("dispatch")
acknowledge = _named("acknowledge")
return_case = _named("return")
feedback = _named("feedback")
verify_pass = _named("verify_pass")
verify_fail = _named("verify_fail")
close = _named("close")
archive = _named("archive")
escalate = _named("escalate")
request_extension = _named("request_extension")
approve_extension = _named("approve_extension")
reassign = _named("reassign")

__all__ = ["OPEN_STATUSES", "ActionResult", "perform"]
