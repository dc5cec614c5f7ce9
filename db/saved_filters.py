"""Named case-queue filters, stored per user so they follow the operator.

A saved filter is a name and a JSON object of criteria (``console.case_filter
.CaseFilter.to_criteria``).  The criteria are kept as given, within a size
limit; reading them back tolerates keys a newer console may add, so this
module checks only that they are a JSON object of reasonable size.  Names are
what operators pick from a list, so they are checked like any other input:
not empty, no control characters, at most ``MAX_NAME`` characters (the
column's width).
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from db.errors import BadInput
from db.models import AppUser, SavedFilter
from db.session import bind, transaction, with_retry
from db.validation import has_controls

MAX_NAME = 60
MAX_CRITERIA_BYTES = 4000
MAX_FILTERS_PER_USER = 100
_FILTER_LOCK = 0x6766  # "gf": advisory lock namespace of a user's saved filters

_F = SavedFilter.__table__
_U = AppUser.__table__


def clean_name(name) -> str:
    """A saved filter's name, trimmed, or BadInput saying what is wrong with it."""
    if not isinstance(name, str):
        raise BadInput("筛选名称必须是文本。", "The filter name must be text.")
    name = name.strip()
    if not name:
        raise BadInput("请填写筛选名称。", "The filter name is required.")
    if len(name) > MAX_NAME:
        raise BadInput(
            f"筛选名称过长（{len(name)} 字，上限 {MAX_NAME} 字）。",
            f"The filter name is too long ({len(name)} characters, at most {MAX_NAME}).",
        )
    if has_controls(name, frozenset()):
        raise BadInput(
            "筛选名称含有不可见的控制字符。", "The filter name contains control characters."
        )
    return name


def _clean_criteria(criteria) -> dict:
    if not isinstance(criteria, dict):
        raise BadInput("筛选条件格式不正确。", "The filter criteria must be an object.")
    try:
        size = len(json.dumps(criteria, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise BadInput("筛选条件格式不正确。", "The filter criteria are not valid JSON.") from exc
    if size > MAX_CRITERIA_BYTES:
        raise BadInput("筛选条件过长。", "The filter criteria are too long.")
    return criteria


def _user_id(user_id) -> int:
    """The user's id; an ``Actor`` stands for its own id (and proves it when writing)."""
    user_id = getattr(user_id, "id", user_id)
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise BadInput("用户编号不正确。", "Invalid user id.")
    return user_id


def list_filters(engine: Engine, user_id: int) -> list[tuple[str, dict]]:
    """This user's saved filters as (name, criteria), by name."""
    uid = _user_id(user_id)
    with engine.connect() as conn:
        rows = conn.execute(
            select(_F.c.name, _F.c.criteria).where(_F.c.user_id == uid).order_by(_F.c.name)
        ).all()
    return [(r.name, dict(r.criteria or {})) for r in rows]


def save_filter(engine: Engine, user_id: int, name: str, criteria: dict) -> str:
    """Create or replace this user's filter called ``name``; returns the stored name."""
    uid = _user_id(user_id)
    clean = clean_name(name)
    crit = _clean_criteria(criteria)

    def work() -> str:
        with transaction(engine) as conn:
            bind(conn, user_id, "saved_filter")
            if conn.execute(select(_U.c.id).where(_U.c.id == uid)).first() is None:
                raise BadInput(f"用户 {uid} 不存在。", f"No user with id {uid}.")
            # One save per user at a time, so the count below is still true at the
            # insert: two consoles saving the 100th filter at once keep the limit.
            conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :uid)"),
                         {"ns": _FILTER_LOCK, "uid": uid})
            count = conn.execute(
                select(func.count()).select_from(_F).where(_F.c.user_id == uid)
            ).scalar_one()
            exists = conn.execute(
                select(_F.c.name).where((_F.c.user_id == uid) & (_F.c.name == clean))
            ).first()
            if exists is None and count >= MAX_FILTERS_PER_USER:
                raise BadInput(
                    f"已保存的筛选已达上限（{MAX_FILTERS_PER_USER} 个），请先删除不用的。",
                    f"At most {MAX_FILTERS_PER_USER} saved filters; delete one first.",
                )
            stmt = insert(_F).values(user_id=uid, name=clean, criteria=crit)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[_F.c.user_id, _F.c.name],
                    set_={"criteria": stmt.excluded.criteria, "updated_at": func.now()},
                )
            )
        return clean

    try:
        return with_retry(work)
    except IntegrityError as exc:  # the user was deleted meanwhile
        raise BadInput(f"用户 {uid} 不存在。", f"No user with id {uid}.") from exc


def delete_filter(engine: Engine, user_id: int, name: str) -> bool:
    """Delete this user's filter called ``name``; False when there was none."""
    uid = _user_id(user_id)
    clean = clean_name(name)

    def work() -> bool:
        with transaction(engine) as conn:
            bind(conn, user_id, "saved_filter")
            result = conn.execute(delete(_F).where((_F.c.user_id == uid) & (_F.c.name == clean)))
            return result.rowcount > 0

    return with_retry(work)
