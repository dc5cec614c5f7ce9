"""Time limits at work: cases near or past their deadline, and automatic escalation.

Escalation of overdue cases is an ordinary logged action by the built-in
``system`` user, so it appears in every console's timeline and feed like
any other, and it is idempotent: several consoles may run it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, case, func, literal, select, update

from console.workflow import OPEN_STATUSES
from db.case_actions import C, append_log
from db.session import transaction
from db.users import system_actor

WARN_FRACTION = 0.8


@dataclass(frozen=True)
class DeadlineState:
    number: str
    status: str
    stage_due_at: datetime
    fraction: float  # elapsed share of the stage's limit; ≥ 1 means overdue
    escalation: int

    @property
    def overdue(self) -> bool:
        return self.fraction >= 1.0


def cases_near_deadline(
    engine: Engine, fraction: float = WARN_FRACTION, now: datetime | None = None
) -> list[DeadlineState]:
    """Open cases whose current stage has used at least ``fraction`` of its limit."""
    clock = literal(now) if now is not None else func.now()
    elapsed = func.extract("epoch", clock - C.c.stage_started_at)
    allowed = func.greatest(func.extract("epoch", C.c.stage_due_at - C.c.stage_started_at), 1)
    share = (elapsed / allowed).label("share")
    stmt = (
        select(C.c.number, C.c.status, C.c.stage_due_at, share, C.c.escalation)
        .where(
            and_(
                C.c.status.in_(OPEN_STATUSES),
                C.c.stage_due_at.is_not(None),
                elapsed >= allowed * fraction,
            )
        )
        .order_by(C.c.stage_due_at)
    )
    with engine.connect() as conn:
        return [
            DeadlineState(r.number, r.status, r.stage_due_at, float(r.share), r.escalation)
            for r in conn.execute(stmt)
        ]


def escalate_overdue(engine: Engine) -> list[str]:
    """Escalate overdue open cases: 督办 when overdue, 挂牌督办 at twice the limit.

    Each case is its own transaction; rows another operator holds are skipped
    (``SKIP LOCKED``) and picked up on the next run instead of waiting.
    """
    actor = system_actor(engine)
    span = C.c.stage_due_at - C.c.stage_started_at
    target = case(
        (func.now() >= C.c.stage_due_at + span, 2),
        (func.now() >= C.c.stage_due_at, 1),
        else_=0,
    )
    with engine.connect() as conn:
        candidates = (
            conn.execute(
                select(C.c.id).where(
                    and_(
                        C.c.status.in_(OPEN_STATUSES),
                        C.c.stage_due_at.is_not(None),
                        C.c.stage_due_at <= func.now(),
                        C.c.escalation < target,
                    )
                )
            )
            .scalars()
            .all()
        )
    escalated = []
    for case_id in candidates:
        with transaction(engine) as conn:
            row = conn.execute(
                select(
                    C.c.id,
                    C.c.number,
                    C.c.status,
                    C.c.version,
                    C.c.escalation,
                    target.label("target"),
                )
                .where(and_(C.c.id == case_id, C.c.status.in_(OPEN_STATUSES)))
                .with_for_update(skip_locked=True)
            ).first()
            if row is None or row.target is None or row.target <= row.escalation:
                continue
            conn.execute(
                update(C)
                .where(C.c.id == row.id)
                .values(escalation=row.target, version=row.version + 1, updated_at=func.now())
            )
            append_log(
                conn,
                actor,
                row.id,
                row.number,
                "auto_escalate",
                row.status,
                row.status,
                row.version + 1,
                "超时自动督办 / overdue",
                {"level": int(row.target), "previous": row.escalation},
            )
            escalated.append(row.number)
    return escalated
