"""Read-only views of cases for the CLI, the window and tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Connection, Engine, and_, any_, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY

from db.errors import NotFound
from db.models import (
    Attachment,
    Case,
    CaseAssignment,
    CaseLog,
    Category,
    Community,
    Department,
    Grid,
    Street,
    Worker,
)
from db.session import connection
from db.workflow import OPEN_STATUSES

C = Case.__table__
L = CaseLog.__table__
A = CaseAssignment.__table__
CAT = Category.__table__
D = Department.__table__
G = Grid.__table__
ATT = Attachment.__table__
W = Worker.__table__


@dataclass
class CaseSummary:
    number: str
    status: str
    category: str
    category_name: str
    severity: str
    source: str
    grid: str | None
    department: str | None
    escalation: int
    reported_at: datetime
    stage_due_at: datetime | None
    version: int
    lon: float
    lat: float
    address: str
    description: str

    def as_json(self) -> dict:
        d = asdict(self)
        for k in ("reported_at", "stage_due_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


def _summary_select():
    return select(
        C.c.number,
        C.c.status,
        CAT.c.code.label("category"),
        CAT.c.name.label("category_name"),
        C.c.severity,
        C.c.source,
        G.c.code.label("grid"),
        D.c.code.label("department"),
        C.c.escalation,
        C.c.reported_at,
        C.c.stage_due_at,
        C.c.version,
        C.c.lon,
        C.c.lat,
        C.c.address,
        C.c.description,
    ).select_from(
        C.join(CAT, CAT.c.id == C.c.category_id)
        .outerjoin(G, G.c.id == C.c.grid_id)
        .outerjoin(D, D.c.id == C.c.department_id)
    )


def list_cases(
    engine: Engine,
    status: str | None = None,
    overdue: bool = False,
    text_filter: str | None = None,
    limit: int = 100,
) -> list[CaseSummary]:
    """Newest cases first, optionally by status, overdue, or free text."""
    stmt = _summary_select()
    conds = []
    if status:
        conds.append(C.c.status == status)
    if overdue:
        conds.append(C.c.stage_due_at < func.now())
    if text_filter:
        like = f"%{text_filter}%"
        conds.append(
            or_(C.c.number.ilike(like), C.c.description.ilike(like), C.c.address.ilike(like))
        )
    if conds:
        stmt = stmt.where(and_(*conds))
    stmt = stmt.order_by(C.c.id.desc()).limit(max(1, min(int(limit), 100_000)))
    with engine.connect() as conn:
        return [CaseSummary(**r._mapping) for r in conn.execute(stmt)]


def case_detail(engine: Engine | Connection, number: str) -> dict:
    """Everything about one case: fields, assignments (departments with their names),
    the worker it was dispatched to (``worker``: code and name, or None), attachments,
    timeline."""
    with connection(engine) as conn:
        row = conn.execute(
            _summary_select()
            .add_columns(
                C.c.id,
                C.c.reporter,
                C.c.onsite,
                C.c.rework_count,
                C.c.return_count,
                C.c.extension_pending_h,
                C.c.extended_h,
                C.c.close_due_at,
                C.c.filed_at,
                C.c.closed_at,
                C.c.evaluation,
                CAT.c.name_en.label("category_name_en"),
                G.c.name.label("grid_name"),
            )
            .where(C.c.number == number)
        ).first()
        if row is None:
            raise NotFound(f"案件“{number}”不存在。", f"No case numbered '{number}'.")
        case_id = row.id
        assignments = conn.execute(
            select(
                D.c.code,
                D.c.name,
                D.c.name_en,
                A.c.is_lead,
                A.c.acknowledged_at,
                A.c.fed_back_at,
                A.c.feedback,
            )
            .select_from(A.join(D, D.c.id == A.c.department_id))
            .where(A.c.case_id == case_id)
            .order_by(A.c.is_lead.desc(), D.c.code)
        ).all()
        # The field worker the case was dispatched to, if the dispatcher named one.
        worker = conn.execute(
            select(W.c.code, W.c.name)
            .select_from(C.join(W, W.c.id == C.c.worker_id))
            .where(C.c.id == case_id)
        ).first()
        files = conn.execute(
            select(ATT.c.id, ATT.c.filename, ATT.c.mime, ATT.c.size, ATT.c.uploaded_by)
            .where(ATT.c.case_id == case_id)
            .order_by(ATT.c.id)
        ).all()
        log = conn.execute(
            select(
                L.c.seq,
                L.c.action,
                L.c.from_status,
                L.c.to_status,
                L.c.actor_name,
                L.c.actor_role,
                L.c.workstation,
                L.c.at,
                L.c.reason,
                L.c.payload,
            )
            .where(L.c.case_id == case_id)
            .order_by(L.c.seq)
        ).all()
    out = {k: v for k, v in row._mapping.items() if k != "id"}
    out["assignments"] = [dict(a._mapping) for a in assignments]
    out["worker"] = dict(worker._mapping) if worker is not None else None
    out["attachments"] = [dict(f._mapping) for f in files]
    out["log"] = [dict(e._mapping) for e in log]
    return out


def log_since(engine: Engine, seq: int, limit: int = 10_000) -> list[dict]:
    """Case-log entries after ``seq``, in order: the change feed's catch-up read."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                L.c.seq,
                L.c.case_id,
                L.c.case_number,
                L.c.action,
                L.c.from_status,
                L.c.to_status,
                L.c.case_version,
                L.c.actor_name,
                L.c.at,
            )
            .where(L.c.seq > seq)
            .order_by(L.c.seq)
            .limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


# --- the operator console's case queue (console/case_store.py) ----------------

_PARENT = CAT.alias("parent_category")
_COMMUNITY = Community.__table__
_STREET = Street.__table__
_QUEUE_IDS = bindparam("ids", type_=ARRAY(BigInteger))


def _queue_select():
    """Every field a queue row shows or filters on, in one statement.

    The joins are all many-to-one, so the statement returns exactly one row per
    case and the console never needs a second round trip to fill a row.
    """
    return select(
        C.c.id,
        C.c.number,
        C.c.status,
        CAT.c.code.label("category_code"),
        CAT.c.name.label("category_name"),
        CAT.c.name_en.label("category_name_en"),
        func.coalesce(_PARENT.c.code, CAT.c.code).label("category_class"),
        CAT.c.kind,
        C.c.severity,
        C.c.source,
        _STREET.c.code.label("street_code"),
        _STREET.c.name.label("street_name"),
        G.c.code.label("grid_code"),
        G.c.name.label("grid_name"),
        D.c.code.label("department_code"),
        D.c.name.label("department_name"),
        D.c.name_en.label("department_name_en"),
        C.c.escalation,
        C.c.reported_at,
        C.c.stage_started_at,
        C.c.stage_due_at,
        C.c.extension_pending_h.is_not(None).label("extension_pending"),
        C.c.version,
        C.c.description,
        C.c.address,
        C.c.lon,
        C.c.lat,
        C.c.onsite,
        C.c.updated_at,
    ).select_from(
        C.join(CAT, CAT.c.id == C.c.category_id)
        .outerjoin(_PARENT, _PARENT.c.id == CAT.c.parent_id)
        .outerjoin(G, G.c.id == C.c.grid_id)
        .outerjoin(_COMMUNITY, _COMMUNITY.c.id == G.c.community_id)
        .outerjoin(_STREET, _STREET.c.id == _COMMUNITY.c.street_id)
        .outerjoin(D, D.c.id == C.c.department_id)
    )


def _queue_statement(ids, open_only: bool, limit: int | None):
    stmt = _queue_select()
    if ids is not None:
        stmt = stmt.where(C.c.id == any_(_QUEUE_IDS))
    if open_only:
        stmt = stmt.where(C.c.status.in_(sorted(OPEN_STATUSES)))
    stmt = stmt.order_by(C.c.id)
    if limit is not None:
        stmt = stmt.limit(max(0, int(limit)))
    return stmt


def queue_rows(
    engine: Engine,
    ids: Iterable[int] | None = None,
    open_only: bool = True,
    limit: int | None = None,
) -> list[dict]:
    """Queue rows (one dict per case, ordered by id), for the given ids or all.

    ``ids`` is how the console refreshes the cases a burst of log entries
    touched; with ``open_only`` a case that has left the queue (closed,
    archived, rejected, merged) is simply absent from the answer, which is
    what tells the console to drop it.
    """
    params = {}
    if ids is not None:
        params["ids"] = [int(i) for i in ids]
        if not params["ids"]:
            return []
    with engine.connect() as conn:
        result = conn.execute(_queue_statement(ids, open_only, limit), params)
        return [dict(r._mapping) for r in result]


def queue_snapshot(engine: Engine) -> tuple[list[dict], int]:
    """All open queue rows and the newest case-log sequence, from one snapshot.

    Both reads run in one REPEATABLE READ transaction, so every log entry up
    to the returned sequence is reflected in the rows and every later one is
    not: a console that follows the change feed from that sequence misses
    nothing and re-applies nothing.
    """
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            seq = conn.execute(select(func.coalesce(func.max(L.c.seq), 0))).scalar_one()
            rows = [dict(r._mapping) for r in conn.execute(_queue_statement(None, True, None))]
    return rows, int(seq)


def queue_choices(engine: Engine) -> dict[str, list[dict]]:
    """What the queue's filter bar offers: category classes, streets, departments."""
    with engine.connect() as conn:
        classes = conn.execute(
            select(CAT.c.code, CAT.c.name, CAT.c.name_en, CAT.c.kind)
            .where(CAT.c.parent_id.is_(None))
            .order_by(CAT.c.code)
        ).all()
        streets = conn.execute(
            select(_STREET.c.code, _STREET.c.name).order_by(_STREET.c.code)
        ).all()
        departments = conn.execute(
            select(D.c.code, D.c.name, D.c.name_en).where(D.c.active.is_(True)).order_by(D.c.code)
        ).all()
    return {
        "classes": [dict(r._mapping) for r in classes],
        "streets": [dict(r._mapping) for r in streets],
        "departments": [dict(r._mapping) for r in departments],
    }
