"""Console users: logins checked by the database, the acting user, administration.

The database is the authority (revision 0005): ``grid_login`` checks the password,
counts failures in the user's row (5 → locked for 5 minutes, counted across
workstations and unskippable by a modified client) and hands back a session
token.  Every write a console makes proves its user with that token
(``db.session.bind``); users are added, re-passworded and disabled only by an
administrator's session or the owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from db.errors import BadInput, Forbidden, NotFound
from db.models import AppUser
from db.passwords import hash_password
from db.session import bind, transaction, with_retry
from db.validation import has_controls, one_line
from db.workflow import ROLE_LABELS

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=5)
MIN_PASSWORD = 6
MAX_DISPLAY_NAME = 60
_U = AppUser.__table__

__all__ = ["SYSTEM_USER", "Actor", "add_user", "authenticate", "get_actor", "hash_password"]

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
    # The session token grid_login handed out: the proof of identity every write
    # carries.  Never printed (repr=False), never logged.
    token: str | None = field(default=None, repr=False, compare=False)


def add_user(
    engine: Engine,
    name: str,
    role: str,
    password: str,
    display_name: str | None = None,
    department: str | None = None,
    by: Actor | None = None,
) -> Actor:
    """Create a console user, as the administrator ``by`` or (``by`` None) as the owner.

    The database checks who asks (``grid_user_add``) and hashes the password itself;
    the checks here only give a clear message before the round trip.
    """
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
    if has_controls(name, frozenset()):
        raise BadInput("用户名含有不可见的控制字符。", "The user name contains control characters.")
    _check_password(password)
    if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
        raise BadInput(
            f"显示名最多 {MAX_DISPLAY_NAME} 个字符。",
            f"A display name has at most {MAX_DISPLAY_NAME} characters.",
        )
    if display_name is not None:
        display_name = one_line(display_name, "显示名", "display name", MAX_DISPLAY_NAME) or None
    if role == "department" and not department:
        raise BadInput(
            "处置单位用户须指定所属单位（--department）。",
            "A department user needs its department (--department).",
        )
    with transaction(engine) as conn:
        if by is not None:
            bind(conn, by, "users")
        if department:
            found = conn.execute(
                text("SELECT id FROM department WHERE code = :c"), {"c": department}
            ).scalar()
            if found is None:
                raise NotFound(f"未知单位“{department}”。", f"Unknown department '{department}'.")
        taken = BadInput(f"用户“{name}”已存在。", f"User '{name}' already exists.")
        if conn.execute(select(_U.c.id).where(_U.c.name == name)).first():
            raise taken
        uid = _admin_call(
            conn,
            "SELECT grid_user_add(:n, :r, :p, :d, :dep)",
            {"n": name, "r": role, "p": password, "d": display_name, "dep": department},
            taken,  # added by another administrator between the check and here
        ).scalar_one()
        dept_id = conn.execute(
            select(_U.c.department_id).where(_U.c.id == uid)
        ).scalar_one()
    return Actor(uid, name, display_name or name, role, dept_id)


def set_password(engine: Engine, name: str, password: str, by: Actor | None = None) -> None:
    """A new password for ``name``: by an administrator, the user themself, or the owner.

    The user's other sessions end (a stolen token dies with the old password).
    """
    _check_password(password)
    with transaction(engine) as conn:
        if by is not None:
            bind(conn, by, "users")
        _admin_call(conn, "SELECT grid_user_passwd(:n, :p)", {"n": name, "p": password})


def set_active(engine: Engine, name: str, active: bool, by: Actor | None = None) -> None:
    """Disable (or enable again) a login; disabling ends its sessions at once."""
    with transaction(engine) as conn:
        if by is not None:
            bind(conn, by, "users")
        _admin_call(conn, "SELECT grid_user_set_active(:n, :a)", {"n": name, "a": active})


def list_users(engine: Engine) -> list[dict]:
    """Every login (no hashes: consoles cannot read them)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT u.name, u.display_name, u.role, d.code AS department, u.active, "
                "u.locked_until FROM app_user u LEFT JOIN department d ON d.id = u.department_id "
                "WHERE u.role <> 'system' ORDER BY u.role, u.name"
            )
        ).mappings()
        return [dict(r) for r in rows]


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise BadInput(
            f"密码至少 {MIN_PASSWORD} 位。", f"A password needs at least {MIN_PASSWORD} characters."
        )
    if len(password) > 200:
        raise BadInput("密码最多 200 个字符。", "A password has at most 200 characters.")


def _admin_call(conn, sql: str, params: dict, taken: BadInput | None = None):
    """Run one of the database's user-administration functions; its refusal in words."""
    try:
        return conn.execute(text(sql), params)
    except DBAPIError as exc:
        code = getattr(exc.orig, "pgcode", None)
        if code == "23505" and taken is not None:  # unique_violation
            raise taken from None
        if code == "42501":  # insufficient_privilege
            raise Forbidden(
                "只有管理员（或数据库属主）可以管理用户。",
                "Only an administrator (or the database owner) may manage users.",
            ) from None
        if code == "P0002":  # no_data_found
            raise NotFound("未知用户。", "Unknown user.") from None
        raise


MAX_WORKSTATION = 100  # case_log.workstation and presence.workstation are String(100)


def clean_workstation(workstation: str | None) -> str:
    """The name of the machine acting, as the case log stores it; BadInput if it cannot be."""
    return one_line(workstation or "", "工作站名称", "workstation name", MAX_WORKSTATION)


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
    workstation = clean_workstation(workstation)  # before the login, not at the first action
    return with_retry(lambda: _authenticate(engine, name, password, workstation))


def _authenticate(engine: Engine, name: str, password: str, workstation: str) -> Actor:
    # The same message for an unknown user and a wrong password, and the same work
    # in the database for both, so neither the words nor the time tell names apart.
    wrong = Forbidden("用户名或密码错误。", "Wrong user name or password.")
    if not name or not password or len(name) > 60 or len(password) > 200:
        raise wrong
    with transaction(engine) as conn:
        r = conn.execute(
            text("SELECT * FROM grid_login(:n, :p, :w)"),
            {"n": name, "p": password, "w": workstation},
        ).one()
        row = None
        if r.result == "ok":
            row = conn.execute(select(
                _U.c.id, _U.c.name, _U.c.display_name, _U.c.role, _U.c.department_id
            ).where(_U.c.id == r.user_id)).one()
    if r.result == "locked":
        minutes = r.minutes or 1
        raise Forbidden(
            f"连续登录失败次数过多，账号已锁定，请 {minutes} 分钟后再试。",
            f"Too many failed logins; the account is locked for {minutes} more minute(s).",
        )
    if row is None:
        raise wrong
    return Actor(
        row.id, row.name, row.display_name, row.role, row.department_id, workstation, r.token
    )


def logout(engine: Engine, actor: Actor) -> None:
    """End the session: its token is refused from now on."""
    if actor.token:
        with transaction(engine) as conn:
            conn.execute(text("SELECT grid_logout(:t)"), {"t": actor.token})


def system_actor(engine: Engine) -> Actor:
    """The built-in identity of automatic actions (overdue escalation)."""
    return get_actor(engine, SYSTEM_USER, "system")
