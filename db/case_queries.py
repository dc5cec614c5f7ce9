"""Read-only views of cases for the CLI, the window and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, func, or_, select

from db.errors import NotFound
from db.models import (
    Attachment,
    Case,
    CaseAssignment,
    CaseLog,
    Category,
    Department,
    Grid,
)

C = Case.__table__
L = CaseLog.__table__
A = CaseAssignment.__table__
CAT = Category.__table__
D = Department.__table__
G = Grid.__table__
ATT = Attachment.__table__


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


def case_detail(engine: Engine, number: str) -> dict:
    """Everything about one case: fields, assignments, attachments, timeline."""
    with engine.connect() as conn:
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
            )
            .where(C.c.number == number)
        ).first()
        if row is None:
            raise NotFound(f"案件“{number}”不存在。", f"No case numbered '{number}'.")
        case_id = row.id
        assignments = conn.execute(
            select(D.c.code, A.c.is_lead, A.c.acknowledged_at, A.c.fed_back_at, A.c.feedback)
            .select_from(A.join(D, D.c.id == A.c.department_id))
            .where(A.c.case_id == case_id)
            .order_by(A.c.is_lead.desc(), D.c.code)
        ).all()
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
