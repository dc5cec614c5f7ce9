"""Time limits at work: cases near or past their deadline, and automatic escalation.

Escalation of overdue cases is an ordinary logged action by the built-in
``system`` user, so it appears in every console's timeline and feed like
any other, and it is idempotent: several consoles may run it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, func, literal, select, text

from db.case_actions import C
from db.session import transaction
from db.workflow import OPEN_STATUSES

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

    The database does it (``grid_escalate_overdue``, revision 0005) as the built-in
    ``system`` identity: the function takes no arguments and escalates only what the
    clock and the stored deadlines say is overdue, so any console may ask for it
    and none can make it do anything else.  Rows another operator holds are skipped
    (``SKIP LOCKED``) and picked up on the next run.
    """
    with transaction(engine) as conn:
        return list(conn.execute(text("SELECT * FROM grid_escalate_overdue()")).scalars())
