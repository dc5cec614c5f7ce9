"""Console users: creation, argon2 passwords, login with lockout, the acting user.

Lockout (5 failures → 5 minutes) is enforced in the database row, not in a
process, so guessing from several workstations is counted together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, func, select, update

from console.workflow import ROLE_LABELS
from db.errors import BadInput, Forbidden, NotFound
from db.models import AppUser, Department
from db.session import transaction, with_retry

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=5)
MIN_PASSWORD = 6
_hasher = PasswordHasher()
_U = AppUser.__table__

SYSTEM_USER = "system"


@dataclass(frozen=True)
class Actor:
    """Who is acting, as written into every case-log entry."""

    id: int | None
    name: str
    display_name: str
    role: str
    department_id: int | None = None
    workstation: str = ""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_user(
    engine: Engine,
    name: str,
    role: str,
    password: str,
    display_name: str | None = None,
    department: str | None = None,
) -> Actor:
    """Create a console user; the password is stored only as an argon2 hash."""
    name = (name or "").strip()
    if not name or len(name) > 60 or any(ch.isspace() for ch in name):
        raise BadInput(
            "用户名须为 1–60 个字符且不含空格。", "A user name is 1–60 characters without spaces."
        )
    if role not in ROLE_LABELS:
        raise BadInput(
            f"未知角色“{role}”，可用：{', '.join(ROLE_LABELS)}。",
            f"Unknown role '{role}'; use one of {', '.join(ROLE_LABELS)}.",
        )
    if len(password or "") < MIN_PASSWORD:
        raise BadInput(
            f"密码至少 {MIN_PASSWORD} 位。", f"A password needs at least {MIN_PASSWORD} characters."
        )
    if role == "department" and not department:
        raise BadInput(
            "处置单位用户须指定所属单位（--department）。",
            "A department user needs its department (--department).",
        )
    with transaction(engine) as conn:
        dept_id = None
        if department:
            dept_id = conn.execute(
                select(Department.id).where(Department.code == department)
            ).scalar()
            if dept_id is None:
                raise NotFound(f"未知单位“{department}”。", f"Unknown department '{department}'.")
        if conn.execute(select(_U.c.id).where(_U.c.name == name)).first():
            raise BadInput(f"用户“{name}”已存在。", f"User '{name}' already exists.")
        uid = conn.execute(
            _U.insert()
            .values(
                name=name,
                display_name=display_name or name,
                role=role,
                password_hash=hash_password(password),
                department_id=dept_id,
            )
            .returning(_U.c.id)
        ).scalar_one()
    return Actor(uid, name, display_name or name, role, dept_id)


def get_actor(engine: Engine, name: str, workstation: str = "") -> Actor:
    """The user ``name`` as an acting identity (no password check: internal use)."""
    with engine.connect() as conn:
        row = conn.execute(select(_U).where(_U.c.name == name)).first()
    if row is None:
        raise NotFound(f"未知用户“{name}”。", f"Unknown user '{name}'.")
    return Actor(row.id, row.name, row.display_name, row.role, row.department_id, workstation)


def authenticate(engine: Engine, name: str, password: str, workstation: str = "") -> Actor:
    """Check a login; count failures and lock the account after too many.

    The same message for an unknown user and a wrong password, so a login
    screen does not tell a stranger which names exist.
    """
    return with_retry(lambda: _authenticate(engine, name, password, workstation))


def _authenticate(engine: Engine, name: str, password: str, workstation: str) -> Actor:
    wrong = Forbidden("用户名或密码错误。", "Wrong user name or password.")
    with transaction(engine) as conn:
        row = conn.execute(
            select(_U, func.now().label("now")).where(_U.c.name == name).with_for_update()
        ).first()
        if row is None or not row.active or not row.password_hash:
            raise wrong
        if row.locked_until is not None and row.locked_until > row.now:
            minutes = max(1, int((row.locked_until - row.now).total_seconds() // 60 + 1))
            raise Forbidden(
                f"连续登录失败次数过多，账号已锁定，请 {minutes} 分钟后再试。",
                f"Too many failed logins; the account is locked for {minutes} more minute(s).",
            )
        try:
            _hasher.verify(row.password_hash, password)
            ok = True
        except (VerificationError, InvalidHashError):
            ok = False
        if ok:
            values: dict = {"failed_logins": 0, "locked_until": None}
        elif row.failed_logins + 1 >= MAX_FAILURES:
            values = {"failed_logins": 0, "locked_until": row.now + LOCKOUT}
        else:
            values = {"failed_logins": row.failed_logins + 1}
        # The failure count is committed even though the login fails.
        conn.execute(update(_U).where(_U.c.id == row.id).values(**values))
    if not ok:
        raise wrong
    return Actor(row.id, row.name, row.display_name, row.role, row.department_id, workstation)


def system_actor(engine: Engine) -> Actor:
    """The built-in identity of automatic actions (overdue escalation)."""
    return get_actor(engine, SYSTEM_USER, "system")
