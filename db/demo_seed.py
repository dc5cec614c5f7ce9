"""The demo district: Dongcheng with its people, cameras and a month of cases.

Everything a new user needs to see the console work: the real boundary
divided into grids, departments and categories, a roster per grid with one
full-time worker carrying a terminal, cameras on the streets, one login per
role, and 30 days of history (about 600 cases a day) that went through the
real lifecycle as a good district works it: every step inside its stage's
time limit except the handling of a small share of cases (``overdue_share``),
which overran and was escalated; some returned, reworked, extended or handled
on the spot, the newest still open.

The history is generated as events and bulk-loaded (COPY), in time order,
so log sequence order is time order and the whole seed takes seconds.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources

from sqlalchemy import Engine, text

from db.case_actions import LOG_ORDER_LOCK
from db.clock import hall_timezone
from db.demo_accounts import demo_password as demo_account_password
from db.demo_accounts import mark_demo
from db.errors import BadInput
from db.passwords import hash_password
from db.reference import ensure_reference
from db.session import transaction
from db.territory import copy_rows, import_district, reserve_ids
from db.workflow import OPEN_STATUSES

DEMO_ADCODE = "110101"
# The share of dispatched cases whose handling overruns its time limit.  A good
# district (the seeds' numbers) closes 95–99 % of its cases and most on time;
# the rest work inside every stage's limit, so the queue a new user first sees
# holds a handful of escalated, overdue cases rather than a wall of red.
DEFAULT_OVERDUE_SHARE = 0.02

# One login per role, with the demo password printed by the command.
DEMO_USERS = [
    ("intake", "intake", "李娜", None),
    ("dispatcher", "dispatcher", "王伟", None),
    ("department", "department", "张强（环卫）", "huanwei"),
    ("verifier", "verifier", "陈静", None),
    ("leader", "leader", "刘洋", None),
    ("admin", "admin", "赵敏", None),
    ("wall", "wall", "指挥大屏", None),
]
# Colleagues who appear in the history alongside the demo logins.
STAFF = {
    "intake": ["孙丽", "周杰", "吴芳"],
    "dispatcher": ["郑凯", "冯磊"],
    "verifier": ["褚涛", "卫敏"],
    "leader": ["蒋勇"],
}
TERMINAL_USER = ("terminal", "intake", "巡查终端")


def demo_password(role: str) -> str:
    return f"demo-{role}"


def demo_logins() -> list[tuple[str, str, str]]:
    """The demo's logins as (user, role, password), as the README's table lists them."""
    return [(name, role, demo_account_password(name)) for name, role, *_ in DEMO_USERS]


SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩"
    "唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红玉兰志海鹏飞斌宇浩凯欣怡晨阳雪梅"
STREETS = [
    "东四北大街",
    "南锣鼓巷",
    "交道口南大街",
    "朝阳门内大街",
    "王府井大街",
    "东单北大街",
    "雍和宫大街",
    "安定门内大街",
    "崇文门外大街",
    "前门东大街",
    "天坛东路",
    "永定门东街",
    "东直门内大街",
    "北新桥三条",
    "美术馆后街",
    "地安门东大街",
    "和平里东街",
    "光明路",
    "磁器口大街",
    "广渠门内大街",
    "东花市大街",
    "史家胡同",
    "东四十条",
    "张自忠路",
    "灯市口大街",
    "金宝街",
    "建国门内大街",
    "北河沿大街",
    "箭厂胡同",
    "国子监街",
]
DETAILS = {
    "component": ["损坏", "缺失", "破损严重", "松动", "被遮挡", "倾斜", "无法使用"],
    "event": ["影响通行", "群众反映强烈", "多次出现", "影响市容", "存在安全隐患", "持续较长时间"],
}
REJECT_REASONS = ["信息不全，无法核实", "不属于城市管理范围", "重复上报", "现场核实不存在"]
RETURN_REASONS = ["不属于本单位职责", "权属不清，请重新派遣", "位置描述有误"]
REWORK_REASONS = ["现场复查仍未整改到位", "反馈照片与现场不符", "整改后再次出现"]
# How often each category class comes up (events far outnumber components).
CLASS_WEIGHT = {
    "S01": 30,
    "S02": 10,
    "S03": 8,
    "S04": 2,
    "S05": 28,
    "S06": 3,
    "B01": 7,
    "B02": 5,
    "B03": 3,
    "B04": 2,
    "B05": 0.5,
    "B06": 1,
}
SOURCE_WEIGHT = {"patrol": 62, "hotline": 18, "public": 9, "camera": 8, "leader": 3}


@dataclass
class SeedSummary:
    adcode: str
    grids: int
    workers: int
    devices: int
    cameras: int
    users: list[tuple[str, str, str]]
    cases: int
    log_entries: int
    open_cases: int
    seconds: float
    by_status: dict = field(default_factory=dict)
    overdue_cases: int = 0  # open and past the stage deadline when the history ends

    def as_json(self) -> dict:
        return {
            "adcode": self.adcode,
            "grids": self.grids,
            "workers": self.workers,
            "devices": self.devices,
            "cameras": self.cameras,
            "users": [{"name": n, "role": r, "password": p} for n, r, p in self.users],
            "cases": self.cases,
            "log_entries": self.log_entries,
            "open_cases": self.open_cases,
            "overdue_cases": self.overdue_cases,
            "by_status": self.by_status,
            "seconds": round(self.seconds, 2),
        }


def is_seeded(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM worker)")).scalar())


def is_empty(engine: Engine) -> bool:
    """No cases, no workers, no territory: a database nobody has used yet."""
    with engine.connect() as conn:
        return not conn.execute(
            text(
                'SELECT EXISTS (SELECT 1 FROM "case") OR EXISTS (SELECT 1 FROM worker) '
                "OR EXISTS (SELECT 1 FROM district)"
            )
        ).scalar()


def seed_demo(
    engine: Engine,
    days: int = 30,
    cases_per_day: int = 600,
    seed: int = 20261121,
    now: datetime | None = None,
    overdue_share: float = DEFAULT_OVERDUE_SHARE,
) -> SeedSummary:
    """Build the demo district in an empty database (refuses one that has cases).

    ``overdue_share`` is the share of dispatched cases whose handling overran its
    deadline: escalated when it passed (督办, at twice the limit 挂牌督办), most of
    them closed late since, the few still running when the history ends overdue
    in the queue.  Every other step of every case came inside its stage's limit.
    """
    if not 0.0 <= overdue_share <= 1.0:
        raise BadInput("超时比例须在 0–1 之间。", "The overdue share must be between 0 and 1.")
    started = time.monotonic()
    with engine.connect() as conn:
        has_cases = conn.execute(text('SELECT EXISTS (SELECT 1 FROM "case")')).scalar()
    if has_cases or is_seeded(engine):
        raise BadInput(
            "数据库中已有案件或人员，演示数据只能生成在空库中。",
            "The database already has cases or workers; the demo is seeded only into an empty one.",
        )
    ensure_reference(engine)
    with engine.connect() as conn:
        imported = conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM district WHERE adcode = :a)"), {"a": DEMO_ADCODE}
        ).scalar()
    if not imported:
        import_district(
            engine, resources.files("resources").joinpath(f"districts/{DEMO_ADCODE}.geojson")
        )
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    with transaction(engine) as conn:
        users = _users(conn)
        mark_demo(conn)
        world = _World.load(conn)
        workers, devices = _roster(conn, world, rng)
        cameras = _cameras(conn, world, rng)
        history = _History(world, users, rng, now, overdue_share)
        history.generate(days, cases_per_day)
        log_entries = history.write(conn)
    with engine.connect() as conn:
        by_status = dict(
            conn.execute(text('SELECT status, count(*) FROM "case" GROUP BY status')).all()
        )
        overdue = conn.execute(
            text('SELECT count(*) FROM "case" WHERE status = ANY(:s) AND stage_due_at < :now'),
            {"s": list(OPEN_STATUSES), "now": now},
        ).scalar_one()
    open_cases = sum(v for k, v in by_status.items() if k in OPEN_STATUSES)
    return SeedSummary(
        DEMO_ADCODE,
        len(world.grids),
        workers,
        devices,
        cameras,
        demo_logins(),
        len(history.cases),
        log_entries,
        open_cases,
        time.monotonic() - started,
        by_status,
        overdue,
    )


# --- people and things ---------------------------------------------------------


def _users(conn) -> dict:
    """Create the demo logins and staff; return actors by role (and by department)."""
    depts = dict(conn.execute(text("SELECT code, id FROM department")).all())
    dept_names = dict(conn.execute(text("SELECT code, name FROM department")).all())
    rows = [
        (name, display, role, None, depts.get(dept) if dept else None)
        for name, role, display, dept in DEMO_USERS
    ]
    for role, names in STAFF.items():
        rows += [
            (f"{role}{i + 2}", display, role, None, None) for i, display in enumerate(names)
        ]
    for code, dept_id in depts.items():
        if code != "huanwei":
            rows.append(
                (
                    f"dept_{code}",
                    f"{dept_names[code]}值班员",
                    "department",
                    None,
                    dept_id,
                )
            )
    rows.append((TERMINAL_USER[0], TERMINAL_USER[2], TERMINAL_USER[1], None, None))
    # Every login its own password (demo-<login>, db.demo_accounts) and its own salt:
    # no two rows share a hash, and the simulator logs each in like any operator.
    rows = [(n, d, r, hash_password(demo_account_password(n)), dep) for n, d, r, _, dep in rows]
    ids = {}
    for name, display, role, pw_hash, dept_id in rows:
        ids[name] = conn.execute(
            text(
                "INSERT INTO app_user (name, display_name, role, password_hash, department_id) "
                "VALUES (:n, :d, :r, :h, :dep) "
                "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id"
            ),
            {"n": name, "d": display, "r": role, "h": pw_hash, "dep": dept_id},
        ).scalar_one()
    by_role: dict[str, list[tuple[int, str, str]]] = {}
    by_dept: dict[int, tuple[int, str, str]] = {}
    for name, display, role, _, dept_id in rows:
        actor = (ids[name], display, role)
        if name == TERMINAL_USER[0]:
            by_role["terminal"] = [actor]
            continue
        by_role.setdefault(role, []).append(actor)
        if dept_id is not None:
            by_dept[dept_id] = actor
    system = conn.execute(text("SELECT id, display_name FROM app_user WHERE name = 'system'")).one()
    by_role["system"] = [(system.id, system.display_name, "system")]
    return {"role": by_role, "dept": by_dept}


@dataclass
class _World:
    grids: list  # rows: id, code, name, community_id, street_name, min/max lon/lat
    cells: list  # (grid_id, lon, lat) centres of whole cells
    categories: list  # (id, code, name, kind, class_code, default_department_id)
    limits: dict  # (category_id, severity) → row
    departments: list[int]
    grid_worker: dict[int, int] = field(default_factory=dict)  # grid → its full-time worker

    @classmethod
    def load(cls, conn) -> _World:
        grids = conn.execute(
            text(
                "SELECT g.id, g.code, g.name, s.name AS street_name FROM grid g "
                "JOIN community c ON c.id = g.community_id JOIN street s ON s.id = c.street_id "
                "WHERE s.adcode = :a ORDER BY g.code"
            ),
            {"a": DEMO_ADCODE},
        ).all()
        cells = conn.execute(
            text(
                "SELECT grid_id, (min_lon + max_lon) / 2, (min_lat + max_lat) / 2 FROM unit_cell "
                "WHERE adcode = :a AND NOT clipped"
            ),
            {"a": DEMO_ADCODE},
        ).all()
        cats = conn.execute(
            text(
                "SELECT c.id, c.code, c.name, c.kind, p.code AS class_code, "
                "c.default_department_id FROM category c JOIN category p ON p.id = c.parent_id"
            )
        ).all()
        limits = {
            (r.category_id, r.severity): r for r in conn.execute(text("SELECT * FROM time_limit"))
        }
        depts = [r[0] for r in conn.execute(text("SELECT id FROM department ORDER BY id"))]
        return cls(list(grids), [tuple(c) for c in cells], list(cats), limits, depts)


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


ROSTER = [("instructor", 1), ("grid_leader", 1), ("full_time", 1), ("part_time", 10)]


def _roster(conn, world: _World, rng: random.Random) -> tuple[int, int]:
    """Per grid: 网格指导员, 网格长, one full-time worker with a terminal, ten part-timers."""
    people = []
    for gi, g in enumerate(world.grids):
        for role, count in ROSTER:
            for k in range(count):
                people.append((g, gi, role, k))
    ids = reserve_ids(conn, "worker", len(people))
    worker_rows, device_rows, leads = [], [], {}
    for wid, (g, gi, role, k) in zip(ids, people, strict=True):
        status = "on_duty" if role == "full_time" else "off_duty"
        worker_rows.append(
            [
                wid,
                f"{g.code}-{role[:2].upper()}{k + 1:02d}",
                _name(rng),
                f"13{rng.randrange(10**8, 10**9)}",
                g.id,
                role,
                status,
            ]
        )
        if role == "full_time":
            device_rows.append([f"T{gi + 1:05d}", "phone", wid])
            leads.setdefault(g.id, {})["worker"] = wid
        if role == "grid_leader":
            leads.setdefault(g.id, {})["leader"] = wid
    world.grid_worker = {gid: v["worker"] for gid, v in leads.items()}
    copy_rows(
        conn,
        "worker",
        ["id", "code", "name", "phone", "grid_id", "roster_role", "status"],
        worker_rows,
    )
    copy_rows(conn, "device", ["identifier", "kind", "worker_id"], device_rows)
    conn.execute(
        text(
            "UPDATE grid g SET worker_id = v.w, leader_id = v.l FROM ("
            "SELECT unnest(CAST(:g AS int[])) AS g, unnest(CAST(:w AS int[])) AS w, "
            "unnest(CAST(:l AS int[])) AS l) v WHERE g.id = v.g"
        ),
        {
            "g": list(leads),
            "w": [v["worker"] for v in leads.values()],
            "l": [v["leader"] for v in leads.values()],
        },
    )
    return len(worker_rows), len(device_rows)


def _cameras(conn, world: _World, rng: random.Random, count: int = 60) -> int:
    step = max(1, len(world.grids) // count)
    cells_by_grid: dict[int, list] = {}
    for gid, lon, lat in world.cells:
        cells_by_grid.setdefault(gid, []).append((lon, lat))
    rows = []
    for k, g in enumerate(world.grids[::step][:count]):
        lon, lat = rng.choice(cells_by_grid.get(g.id) or [(0, 0)])
        road = rng.choice(STREETS)
        code = f"CAM{k + 1:03d}"
        rows.append(
            [
                code,
                f"{road}{rng.randint(1, 99)}号路口",
                lon,
                lat,
                # The demo's generated scenes, served by the simulator (console.video.demo).
                f"demo://{code}/main",
                f"demo://{code}/sub",
                g.id,
                rng.choice([0, 90, 180, 270]),
                (50.0, 60.0, 70.0, 90.0)[k % 4],  # no draw: the seed's later draws stay
                "{" + f"{road},{'重点部位' if k % 6 == 0 else '街面'}" + "}",
            ]
        )
    copy_rows(conn, "camera", ["code", "name", "lon", "lat", "url", "sub_url", "grid_id",
                               "heading", "view_angle", "groups"], rows)
    return len(rows)


# --- a month of cases ------------------------------------------------------------


@dataclass
class _Event:
    at: datetime
    action: str
    from_status: str | None
    to_status: str
    actor: tuple[int, str, str]
    reason: str | None = None
    payload: dict = field(default_factory=dict)


class _History:
    """Generates cases as sequences of timed events, then writes them in time order."""

    def __init__(
        self,
        world: _World,
        users: dict,
        rng: random.Random,
        now: datetime,
        overdue_share: float = DEFAULT_OVERDUE_SHARE,
    ):
        self.world = world
        self.overdue_share = overdue_share
        self.users = users
        self.rng = rng
        self.now = now
        self.cases: list[dict] = []
        self.events: list[tuple[datetime, int, _Event]] = []
        self.assignments: dict[int, dict] = {}
        cats = world.categories
        self.cat_weights = [CLASS_WEIGHT.get(c.class_code, 1) for c in cats]
        self.sources = list(SOURCE_WEIGHT)
        self.source_weights = list(SOURCE_WEIGHT.values())

    def actor(self, role: str) -> tuple[int, str, str]:
        return self.rng.choice(self.users["role"][role])

    def generate(self, days: int, per_day: int) -> None:
        tz = hall_timezone()
        start_day = (self.now.astimezone(tz) - timedelta(days=days - 1)).date()
        for d in range(days):
            day = start_day + timedelta(days=d)
            n = max(1, int(self.rng.gauss(per_day, per_day * 0.08)))
            times = sorted(self._time_of_day(day, tz) for _ in range(n))
            for t in times:
                if t >= self.now:
                    break
                self._case(t)

    def _time_of_day(self, day, tz) -> datetime:
        # Reports follow the working day: few at night, peaks morning and afternoon.
        hour = self.rng.choice(
            [self.rng.gauss(10, 2), self.rng.gauss(15.5, 2.2), self.rng.uniform(0, 24)]
        )
        hour = min(max(hour, 0.0), 23.99)
        local = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(hours=hour)
        return local.astimezone(UTC)

    def _case(self, reported: datetime) -> None:
        rng, world = self.rng, self.world
        cat = rng.choices(world.categories, weights=self.cat_weights)[0]
        severity = rng.choices(["normal", "urgent", "emergency"], weights=[92, 7, 1])[0]
        limits = world.limits[(cat.id, severity)]
        gid, lon, lat = rng.choice(world.cells)
        lon += rng.uniform(-0.0004, 0.0004)
        lat += rng.uniform(-0.0003, 0.0003)
        source = rng.choices(self.sources, weights=self.source_weights)[0]
        road = rng.choice(STREETS)
        case = {
            "idx": len(self.cases),
            "category_id": cat.id,
            "severity": severity,
            "source": source,
            "lon": lon,
            "lat": lat,
            "grid_id": gid,
            "address": f"{road}{rng.randint(1, 199)}号附近",
            "description": f"{road}{cat.name}{rng.choice(DETAILS[cat.kind])}",
            "reporter": _name(rng) if source in ("hotline", "public") else "",
            "reported_at": reported,
            "onsite": False,
            "department_id": None,
            "escalation": 0,
            "rework_count": 0,
            "return_count": 0,
            "extended_h": 0.0,
            "extension_pending_h": None,
            "evaluation": None,
            "limits": limits,
            "filed_at": None,
            "dispatched_at": None,
            "feedback_at": None,
            "closed_at": None,
            "close_due_at": None,
            "stage": ("reported", reported),
            "stage_extra_h": 0.0,
            "worker_id": None,
        }
        self.cases.append(case)
        events = self._path(case, cat, limits, severity)
        version = 0
        for ev in events:
            if ev.at > self.now:
                break
            version += 1
            self._apply(case, ev)
            self.events.append((ev.at, case["idx"], ev))
        case["version"] = version

    def _within(self, limit_h: float, typical_min: float) -> timedelta:
        """How long one step takes: around its typical time, always inside its stage's limit.

        The hall of a good district works inside its time limits; only the cases
        drawn as late (``overdue_share``) overrun, and only their handling stage.
        """
        rng = self.rng
        cap_min = limit_h * 60 * rng.uniform(0.5, 0.95)
        return timedelta(minutes=min(rng.expovariate(1 / max(typical_min, 0.5)), cap_min))

    def _path(self, case: dict, cat, limits, severity: str) -> list[_Event]:
        rng = self.rng
        f = {"normal": 1.0, "urgent": 0.25, "emergency": 0.1}[severity]
        t = case["reported_at"]
        terminal = self.users["role"]["terminal"][0]
        reporter = terminal if case["source"] == "patrol" else self.actor("intake")
        ev = [_Event(t, "report", None, "reported", reporter)]

        def step(limit_h: float, typical_min: float) -> datetime:
            nonlocal t
            t = t + self._within(limit_h, typical_min)
            return t

        u = rng.random()
        if u < 0.08 and case["source"] == "patrol":  # handled on the spot
            case["onsite"] = True
            ev[0] = _Event(
                t, "report", None, "awaiting_verification", terminal, payload={"onsite": True}
            )
            ev.append(
                _Event(
                    step(limits.verify_h, 120),
                    "verify_pass",
                    "awaiting_verification",
                    "closed",
                    self.actor("verifier"),
                )
            )
            return self._archive(ev, t)
        intake = self.actor("intake")
        if u < 0.12:
            ev.append(
                _Event(
                    step(limits.accept_h, 25 * f),
                    "reject",
                    "reported",
                    "rejected",
                    intake,
                    rng.choice(REJECT_REASONS),
                )
            )
            return ev
        ev.append(_Event(step(limits.accept_h, 15 * f), "accept", "reported", "accepted", intake))
        if u < 0.15 and self.cases[:-1]:
            target = self.cases[max(0, len(self.cases) - rng.randint(2, 40))]
            ev.append(
                _Event(
                    step(limits.file_h, 10 * f),
                    "merge",
                    "accepted",
                    "merged",
                    intake,
                    payload={"into_idx": target["idx"]},
                )
            )
            return ev
        ev.append(_Event(step(limits.file_h, 20 * f), "file", "accepted", "filed", intake))
        slow = rng.random() < 0.08
        dispatcher = self.actor("dispatcher")
        dept = cat.default_department_id or rng.choice(self.world.departments)
        # A dispatcher often names the grid's own full-time worker as well.
        worker = self.world.grid_worker.get(case["grid_id"]) if rng.random() < 0.4 else None

        def dispatch_to(department: int, worker_id: int | None) -> None:
            ev.append(
                _Event(
                    step(limits.dispatch_h, (180 if slow else 25) * f),
                    "dispatch",
                    "filed",
                    "dispatched",
                    dispatcher,
                    payload={"department_id": department, "worker_id": worker_id},
                )
            )

        if rng.random() < 0.05:  # sent to the wrong department first
            wrong = rng.choice([d for d in self.world.departments if d != dept])
            dispatch_to(wrong, None)
            ev.append(
                _Event(
                    step(limits.handle_h, 60),
                    "return",
                    "dispatched",
                    "filed",
                    self.users["dept"].get(wrong, intake),
                    rng.choice(RETURN_REASONS),
                    payload={"department_id": wrong},
                )
            )
        dispatch_to(dept, worker)
        dept_actor = self.users["dept"].get(dept, intake)
        late = rng.random() < self.overdue_share
        rounds = 2 if rng.random() < 0.07 else 1
        for r in range(rounds):
            t = self._handle(ev, t, limits, f, dept, dept_actor, late and r == 0, r == 0)
            verifier = self.actor("verifier")
            if r == 0 and rounds == 2:
                ev.append(
                    _Event(
                        step(limits.verify_h, 150),
                        "verify_fail",
                        "awaiting_verification",
                        "dispatched",
                        verifier,
                        rng.choice(REWORK_REASONS),
                    )
                )
        ev.append(
            _Event(
                step(limits.verify_h, 150),
                "verify_pass",
                "awaiting_verification",
                "closed",
                self.actor("verifier"),
            )
        )
        return self._archive(ev, t)

    def _handle(
        self, ev: list[_Event], start: datetime, limits, f: float, dept: int, dept_actor,
        late: bool, first_round: bool,
    ) -> datetime:
        """One handling round from dispatch (or rework) to feedback; returns the feedback time.

        The handling clock runs from the moment the case entered ``dispatched``
        (acknowledging does not restart it), as the services keep it.  A round
        on time feeds back before the deadline; a late one overruns it and is
        escalated by the system when the deadline passes (督办), and again at
        twice the limit (挂牌督办) if it is still not done, as
        ``db.deadlines.escalate_overdue`` would have done.
        """
        rng = self.rng
        limit = timedelta(hours=limits.handle_h)
        ack = start + min(
            timedelta(minutes=rng.expovariate(1 / max(40 * f, 0.5))), limit * rng.uniform(0.1, 0.3)
        )
        ev.append(
            _Event(
                ack, "acknowledge", "dispatched", "in_progress", dept_actor,
                payload={"department_id": dept},
            )
        )
        due, last = start + limit, ack
        if first_round and rng.random() < 0.02:  # more time asked for, and granted
            asked = ack + limit * rng.uniform(0.05, 0.2)
            granted = asked + min(timedelta(minutes=rng.expovariate(1 / 60)), limit * 0.2)
            ev.append(
                _Event(
                    asked, "request_extension", "in_progress", "in_progress", dept_actor,
                    "需要协调施工队伍", {"hours": 24},
                )
            )
            ev.append(
                _Event(
                    granted, "approve_extension", "in_progress", "in_progress",
                    self.actor("leader"), None, {"hours": 24, "approved": True},
                )
            )
            due, last = due + timedelta(hours=24), granted
        span = due - start  # the stage's whole allowance, extension included
        if late:
            finish = due + span * rng.uniform(0.05, 1.5)
            system = self.users["role"]["system"][0]
            for level, at in ((1, due), (2, due + span)):
                if finish > at:
                    ev.append(
                        _Event(
                            at, "auto_escalate", "in_progress", "in_progress", system,
                            "超时自动督办 / overdue", {"level": level, "previous": level - 1},
                        )
                    )
        else:
            hours = rng.lognormvariate(math.log(limits.handle_h * 0.3), 0.6)
            finish = start + min(timedelta(hours=hours), span * rng.uniform(0.6, 0.97))
            finish = max(finish, last + (due - last) * rng.uniform(0.05, 0.5))
        ev.append(
            _Event(
                finish, "feedback", "in_progress", "awaiting_verification", dept_actor, None,
                {"department_id": dept, "evidence": "已处置完毕，附现场照片"},
            )
        )
        return finish

    def _archive(self, ev: list[_Event], closed: datetime) -> list[_Event]:
        rng = self.rng
        at = closed + timedelta(hours=rng.uniform(20, 50))
        if at < self.now - timedelta(hours=12):
            evaluation = rng.choices(
                ["satisfied", "basically_satisfied", "dissatisfied"], weights=[85, 12, 3]
            )[0]
            ev.append(
                _Event(
                    at,
                    "archive",
                    "closed",
                    "archived",
                    self.actor("intake"),
                    None,
                    {"evaluation": evaluation},
                )
            )
        return ev

    def _apply(self, case: dict, ev: _Event) -> None:
        """Fold one event into the case row, as the services would have."""
        limits = case["limits"]
        stage_hours = {
            "reported": limits.accept_h,
            "accepted": limits.file_h,
            "filed": limits.dispatch_h,
            "dispatched": limits.handle_h,
            "in_progress": limits.handle_h,
            "awaiting_verification": limits.verify_h,
        }
        action = ev.action
        if ev.to_status != ev.from_status or action in ("report",):
            keep_stage = action == "acknowledge"  # the handle clock runs on from dispatch
            if not keep_stage:
                case["stage"] = (ev.to_status, ev.at)
                case["stage_extra_h"] = 0.0  # an extension moves only the stage it was granted in
        case["status"] = ev.to_status
        if action == "report" and ev.payload.get("onsite"):
            case["filed_at"] = case["feedback_at"] = ev.at
            case["close_due_at"] = ev.at + timedelta(hours=limits.close_h)
        elif action == "file":
            case["filed_at"] = ev.at
            case["close_due_at"] = ev.at + timedelta(hours=limits.close_h)
        elif action == "dispatch":
            case["department_id"] = ev.payload["department_id"]
            case["worker_id"] = ev.payload.get("worker_id")
            case["dispatched_at"] = ev.at
            self.assignments[case["idx"]] = {
                "department_id": ev.payload["department_id"],
                "assigned_at": ev.at,
                "acknowledged_at": None,
                "fed_back_at": None,
                "feedback": None,
            }
        elif action == "return":
            case["return_count"] += 1
            case["department_id"] = case["worker_id"] = None
            self.assignments.pop(case["idx"], None)
        elif action == "acknowledge":
            self.assignments[case["idx"]]["acknowledged_at"] = ev.at
        elif action == "feedback":
            case["feedback_at"] = ev.at
            a = self.assignments[case["idx"]]
            a["fed_back_at"], a["feedback"] = ev.at, ev.payload.get("evidence")
        elif action == "verify_fail":
            case["rework_count"] += 1
            case["feedback_at"] = None
            a = self.assignments[case["idx"]]
            a["acknowledged_at"] = a["fed_back_at"] = a["feedback"] = None
        elif action in ("verify_pass", "reject", "merge"):
            case["closed_at"] = ev.at
        elif action == "archive":
            case["evaluation"] = ev.payload.get("evaluation")
        elif action == "auto_escalate":
            case["escalation"] = ev.payload["level"]
        elif action == "request_extension":
            case["extension_pending_h"] = ev.payload["hours"]
        elif action == "approve_extension":
            case["extension_pending_h"] = None
            case["extended_h"] += ev.payload["hours"]
            case["stage_extra_h"] += ev.payload["hours"]
            if case["close_due_at"] is not None:  # as the service moves both deadlines
                case["close_due_at"] += timedelta(hours=ev.payload["hours"])
        status, since = case["stage"]
        hours = stage_hours.get(status)
        case["stage_started_at"] = since
        case["stage_due_at"] = (
            since + timedelta(hours=hours + case["stage_extra_h"]) if hours else None
        )
        case["updated_at"] = ev.at

    def write(self, conn) -> int:
        tz = hall_timezone()
        ids = reserve_ids(conn, "case", len(self.cases))
        counters: dict[str, int] = {}
        numbers = []
        for case in self.cases:  # generated in report order
            day = case["reported_at"].astimezone(tz).strftime("%Y%m%d")
            counters[day] = counters.get(day, 0) + 1
            numbers.append(f"{day}-{counters[day]:05d}")
        merged_into = {}
        for _, idx, ev in self.events:
            if ev.action == "merge":
                merged_into[idx] = ids[ev.payload.pop("into_idx")]
        columns = [
            "id",
            "number",
            "source",
            "category_id",
            "severity",
            "lon",
            "lat",
            "grid_id",
            "address",
            "description",
            "reporter",
            "status",
            "onsite",
            "department_id",
            "worker_id",
            "merged_into_id",
            "escalation",
            "rework_count",
            "return_count",
            "extension_pending_h",
            "extended_h",
            "stage_started_at",
            "stage_due_at",
            "close_due_at",
            "reported_at",
            "filed_at",
            "dispatched_at",
            "feedback_at",
            "closed_at",
            "evaluation",
            "version",
            "updated_at",
        ]

        def case_rows():
            for case, cid, number in zip(self.cases, ids, numbers, strict=True):
                open_ = case["status"] not in ("closed", "archived", "rejected", "merged")
                yield [
                    cid,
                    number,
                    case["source"],
                    case["category_id"],
                    case["severity"],
                    case["lon"],
                    case["lat"],
                    case["grid_id"],
                    case["address"],
                    case["description"],
                    case["reporter"],
                    case["status"],
                    case["onsite"],
                    case["department_id"],
                    case["worker_id"],
                    merged_into.get(case["idx"]),
                    case["escalation"],
                    case["rework_count"],
                    case["return_count"],
                    case["extension_pending_h"],
                    case["extended_h"],
                    case["stage_started_at"].isoformat(),
                    case["stage_due_at"].isoformat() if open_ and case["stage_due_at"] else None,
                    _iso(case["close_due_at"]),
                    case["reported_at"].isoformat(),
                    _iso(case["filed_at"]),
                    _iso(case["dispatched_at"]),
                    _iso(case["feedback_at"]),
                    _iso(case["closed_at"]),
                    case["evaluation"],
                    case["version"],
                    case["updated_at"].isoformat(),
                ]

        copy_rows(conn, '"case"', columns, case_rows())
        copy_rows(
            conn,
            "case_assignment",
            [
                "case_id",
                "department_id",
                "is_lead",
                "assigned_at",
                "acknowledged_at",
                "fed_back_at",
                "feedback",
            ],
            (
                [
                    ids[idx],
                    a["department_id"],
                    True,
                    a["assigned_at"].isoformat(),
                    _iso(a["acknowledged_at"]),
                    _iso(a["fed_back_at"]),
                    a["feedback"],
                ]
                for idx, a in self.assignments.items()
            ),
        )
        conn.execute(
            text(
                "INSERT INTO case_counter (day, n) SELECT * FROM unnest(CAST(:d AS text[]), "
                "CAST(:n AS int[])) ON CONFLICT (day) DO UPDATE SET n = greatest(case_counter.n, "
                "EXCLUDED.n)"
            ),
            {"d": list(counters), "n": list(counters.values())},
        )
        # The log, in time order, under the same lock as live actions; one NOTIFY at the
        # end instead of one per entry.
        self.events.sort(key=lambda e: (e[0], e[1]))
        versions: dict[int, int] = {}

        def log_rows():
            for at, idx, ev in self.events:
                versions[idx] = versions.get(idx, 0) + 1
                actor_id, actor_name, role = ev.actor
                payload = dict(ev.payload)
                if ev.action == "merge":
                    payload["into"] = numbers[self._index_of(merged_into[idx], ids)]
                yield [
                    ids[idx],
                    numbers[idx],
                    ev.action,
                    ev.from_status,
                    ev.to_status,
                    versions[idx],
                    actor_id,
                    actor_name,
                    role,
                    "demo-history",
                    at.isoformat(),
                    ev.reason,
                    json.dumps(payload, ensure_ascii=False),
                ]

        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOG_ORDER_LOCK})
        conn.execute(text("ALTER TABLE case_log DISABLE TRIGGER case_log_notify"))
        copy_rows(
            conn,
            "case_log",
            [
                "case_id",
                "case_number",
                "action",
                "from_status",
                "to_status",
                "case_version",
                "actor_id",
                "actor_name",
                "actor_role",
                "workstation",
                "at",
                "reason",
                "payload",
            ],
            log_rows(),
        )
        conn.execute(text("ALTER TABLE case_log ENABLE TRIGGER case_log_notify"))
        conn.execute(text("SELECT pg_notify('grid_case', 'bulk')"))
        return len(self.events)

    _id_pos: dict[int, int] | None = None

    def _index_of(self, case_id: int, ids: list[int]) -> int:
        if self._id_pos is None:
            self._id_pos = {cid: i for i, cid in enumerate(ids)}
        return self._id_pos[case_id]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
