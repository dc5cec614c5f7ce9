"""Keep the demo district alive: patrols, reports, and the people who handle cases.

Full-time grid workers walk or cycle their own grids along plausible paths
(cell to cell, at walking or cycling speed, with pauses) and their terminals
report a position every 30 seconds: through the gateway's OsmAnd protocol
over HTTP when a gateway URL is given, else through the same ingest function
the gateway uses.  Problems are reported at the district's daily rate;
intake operators, dispatchers, departments and verifiers act on cases after
realistic delays, through the same services (and the same role checks) as
the console, so a few cases go overdue and the automatic escalation has work.

``speed`` makes the district's life run faster (movement, report rate and
every delay); timestamps stay on the real clock, so a wall display shows
"now".  Every case step uses the case's expected version: a human operator
working the same case in a console simply wins or loses like anyone else.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, text

from db.case_actions import perform
from db.demo_seed import STREETS
from db.errors import GridError
from db.users import Actor, authenticate, get_actor
from db.workflow import REPORTING_WORKER_SOURCE

log = logging.getLogger(__name__)

REPORT_EVERY_S = 30.0  # a terminal's reporting interval
KNOTS_PER_MS = 1.943844
M_PER_DEG = 111_195.0

# Mean delay (seconds at speed 1) before each role acts on a case in a status.
DELAYS = {
    "reported": 600,
    "accepted": 900,
    "filed": 1200,
    "dispatched": 2400,
    "awaiting_verification": 5400,
}
SEVERITY_FACTOR = {"normal": 1.0, "urgent": 0.25, "emergency": 0.1}
REWORK_SHARE = 0.07
ONSITE_SHARE = 0.08


@dataclass
class Walker:
    """One full-time worker with a terminal, patrolling the own grid."""

    device: str
    worker_id: int
    code: str  # the worker's roster code: what the terminal names its reporter by
    name: str
    grid_id: int
    cells: list[tuple[float, float]]
    lon: float
    lat: float
    speed_ms: float
    battery: float
    target: tuple[float, float] | None = None
    pause_s: float = 0.0
    next_report_s: float = 0.0
    course: float = 0.0

    def step(self, dt: float, rng: random.Random) -> None:
        if self.pause_s > 0:
            self.pause_s -= dt
            return
        if self.target is None:
            self.target = rng.choice(self.cells)
        tx, ty = self.target
        kx = M_PER_DEG * math.cos(math.radians(self.lat))
        dx, dy = (tx - self.lon) * kx, (ty - self.lat) * M_PER_DEG
        dist = math.hypot(dx, dy)
        move = self.speed_ms * dt
        if dist <= move:
            self.lon, self.lat = tx, ty
            self.target = None
            if rng.random() < 0.3:  # stop to look, talk, fix something
                self.pause_s = rng.uniform(30, 300)
            return
        self.course = (math.degrees(math.atan2(dx, dy)) + 360) % 360
        self.lon += dx / dist * move / kx
        self.lat += dy / dist * move / M_PER_DEG
        self.battery = max(5.0, self.battery - dt * 0.0005)


@dataclass
class SimStats:
    positions: int = 0
    reports: int = 0
    actions: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)


class Simulator:
    """Runs the district; ``run`` blocks, ``start`` runs it on a daemon thread."""

    def __init__(
        self,
        engine: Engine,
        speed: float = 1.0,
        gateway: str | None = None,
        operators: bool = True,
        cases_per_day: float = 600.0,
        seed: int | None = None,
        tick_s: float = 0.5,
        position_engine: Engine | Callable[[], Engine] | None = None,
        video=None,
    ):
        if not (0 < speed <= 10_000):
            raise ValueError("speed must be > 0 and at most 10000")
        self.engine = engine
        # Positions are the gateway's to write (its own database role); operators'
        # steps go through the console's checked role.
        # (A callable opens it in the simulator's thread, off the GUI's.)
        self.position_engine = position_engine or engine
        self._owner = False
        self.speed = speed
        self.gateway = gateway
        self.operators = operators
        self.cases_per_day = cases_per_day
        self.tick_s = tick_s
        self.rng = random.Random(seed)
        self.stats = SimStats()
        self.walkers: list[Walker] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: http.client.HTTPConnection | None = None
        # The demo's cameras, live (``console.video.demo.DemoVideo``): started with the
        # simulator, so the wall decodes network streams on the demo too.
        self.video = video
        self._actors: dict = {}
        self._categories: list = []
        self._last_workflow = 0.0

    # -- setup ------------------------------------------------------------------

    def load(self) -> Simulator:
        """Read the district and log its people in; on failure nothing is half-loaded."""
        self.walkers = []
        try:
            return self._load()
        except BaseException:
            self.walkers = []  # tried again from the start on the next tick
            raise

    def _load(self) -> Simulator:
        if callable(self.position_engine) and not isinstance(self.position_engine, Engine):
            self.position_engine = self.position_engine()
        with self.engine.connect() as conn:
            self._owner = bool(
                conn.execute(text("SELECT pg_has_role(current_user, 'grid_owner', 'MEMBER')"))
                .scalar()
            )
            rows = conn.execute(
                text(
                    "SELECT d.identifier, w.id, w.code, w.name, w.grid_id FROM device d "
                    "JOIN worker w ON w.id = d.worker_id WHERE w.grid_id IS NOT NULL AND w.active "
                    "ORDER BY d.identifier"
                )
            ).all()
            cells: dict[int, list[tuple[float, float]]] = {}
            for gid, lon, lat in conn.execute(
                text(
                    "SELECT grid_id, (min_lon + max_lon) / 2, (min_lat + max_lat) / 2 "
                    "FROM unit_cell WHERE NOT clipped"
                )
            ):
                cells.setdefault(gid, []).append((lon, lat))
            self._categories = conn.execute(
                text(
                    "SELECT c.code, c.kind, c.name FROM category c WHERE c.parent_id IS NOT NULL "
                    "ORDER BY c.code"
                )
            ).all()
            dept_users = conn.execute(
                text(
                    "SELECT DISTINCT ON (department_id) department_id, name FROM app_user "
                    "WHERE role = 'department' AND active ORDER BY department_id, id"
                )
            ).all()
        rng = self.rng
        for device, wid, wcode, name, gid in rows:
            mine = cells.get(gid)
            if not mine:
                continue
            lon, lat = rng.choice(mine)
            cycling = rng.random() < 0.3
            self.walkers.append(
                Walker(
                    device,
                    wid,
                    wcode,
                    name,
                    gid,
                    mine,
                    lon,
                    lat,
                    rng.uniform(3.5, 4.5) if cycling else rng.uniform(1.1, 1.5),
                    rng.uniform(40, 100),
                    next_report_s=rng.uniform(0, REPORT_EVERY_S),
                )
            )
        self._actors = {"dept": {}}
        for role, user in (
            ("terminal", "terminal"),
            ("intake", "intake"),
            ("dispatcher", "dispatcher"),
            ("verifier", "verifier"),
        ):
            try:
                self._actors[role] = self._login(user)
            except GridError:
                self._actors[role] = None
        for dept_id, user in dept_users:
            self._actors["dept"][dept_id] = self._login(user)
        return self

    def _login(self, user: str) -> Actor:
        """The demo user logged in (on the owner's connection, as itself unchecked)."""
        from db.demo_accounts import demo_password

        if self._owner:
            return get_actor(self.engine, user, "simulator")
        return authenticate(self.engine, user, demo_password(user), "simulator")

    # -- running ----------------------------------------------------------------

    def start(self) -> Simulator:
        if self.video is not None:
            self.video.start()
        self._thread = threading.Thread(target=self.run, name="simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.video is not None:
            self.video.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._http is not None:
            self._http.close()

    def run(self, duration_s: float | None = None) -> SimStats:
        """Tick until stopped (or ``duration_s``), surviving the database going away.

        A blip (a restart, a dropped connection, a refused login) is logged, the
        loop waits (1 s, doubling to 30 s) and goes on where it was; before,
        the first driver error ended the thread and the district stood still.
        """
        started = time.monotonic()
        last = started
        pause = 1.0
        while not self._stop.is_set():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            try:
                if not self.walkers:
                    self.load()
                self.tick(now - last)
            except Exception as exc:  # the database away, or a bug: log, wait, go on
                self._note(f"simulator paused {pause:.0f} s: {_one_line(exc)}")
                if self._stop.wait(pause):
                    break
                pause = min(pause * 2, 30.0)
                last = time.monotonic()  # the district does not jump ahead
                continue
            pause = 1.0
            last = now
            self._stop.wait(self.tick_s)
        return self.stats

    def tick(self, real_dt: float) -> None:
        """Advance the district by ``real_dt`` seconds of wall time (× speed)."""
        dt = real_dt * self.speed
        due = []
        for w in self.walkers:
            w.step(dt, self.rng)
            w.next_report_s -= dt
            if w.next_report_s <= 0:
                w.next_report_s += REPORT_EVERY_S
                due.append(w)
        if due:
            self._send_positions(due)
        # Problems found on patrol, at the district's daily rate.
        expected = self.cases_per_day * dt / 86_400
        for _ in range(self._poisson(expected)):
            self._report_problem()
        if time.monotonic() - self._last_workflow >= 2.0:
            self._last_workflow = time.monotonic()
            self._workflow()

    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        k, p, limit = 0, 1.0, math.exp(-lam)
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    # -- positions ----------------------------------------------------------------

    def _send_positions(self, walkers: list[Walker]) -> None:
        now = datetime.now(UTC)
        try:
            if self.gateway:
                for w in walkers:
                    self._http_report(w, now)
            else:
                from db.positions import PositionReport, store_positions

                store_positions(
                    self.position_engine,
                    [
                        PositionReport(
                            w.device,
                            now,
                            w.lon,
                            w.lat,
                            speed_kmh=0.0 if w.pause_s > 0 else w.speed_ms * 3.6,
                            course=round(w.course, 1),
                            accuracy=5.0,
                            battery=round(w.battery, 1),
                        )
                        for w in walkers
                    ],
                )
            self.stats.positions += len(walkers)
        except (GridError, OSError, http.client.HTTPException) as exc:
            self._note(f"positions not sent: {exc}")

    def _http_report(self, w: Walker, now: datetime) -> None:
        """One OsmAnd-protocol report, as a phone running a tracking client sends it."""
        url = urllib.parse.urlsplit(self.gateway)
        if self._http is None:
            self._http = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=5)
        knots = 0.0 if w.pause_s > 0 else w.speed_ms * KNOTS_PER_MS
        query = urllib.parse.urlencode(
            {
                "id": w.device,
                "lat": f"{w.lat:.7f}",
                "lon": f"{w.lon:.7f}",
                "timestamp": int(now.timestamp()),
                "speed": f"{knots:.2f}",
                "bearing": f"{w.course:.1f}",
                "accuracy": "5",
                "batt": f"{w.battery:.0f}",
            }
        )
        try:
            self._http.request("GET", f"{url.path or '/'}?{query}")
            response = self._http.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self._http.close()
            self._http = None
            raise
        if response.status != 200:
            self._note(f"gateway answered {response.status} for {w.device}")

    # -- cases ----------------------------------------------------------------------

    def _report_problem(self) -> None:
        actor = self._actors.get("terminal")
        if actor is None or not self.walkers or not self._categories:
            return
        w = self.rng.choice(self.walkers)
        code, _kind, name = self.rng.choice(self._categories)
        detail = self.rng.choice(["影响通行", "影响市容", "存在安全隐患", "群众反映"])
        try:
            perform(
                self.engine,
                actor,
                "report",
                category=code,
                lon=w.lon,
                lat=w.lat,
                address=f"{self.rng.choice(STREETS)}{self.rng.randint(1, 199)}号附近",
                source=REPORTING_WORKER_SOURCE,
                description=f"巡查发现{name}，{detail}",
                reporter=w.name,
                worker=w.code,  # credited to the walker in the ranking by worker
                onsite=self.rng.random() < ONSITE_SHARE,
            )
            self.stats.reports += 1
        except GridError as exc:
            self._note(f"report refused: {exc.message('en')}")

    def _workflow(self) -> None:
        """Everyone in the hall and the departments takes the cases that are due."""
        statuses = ["dispatched", "in_progress", "awaiting_verification"]
        if self.operators:
            statuses += ["reported", "accepted", "filed"]
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.number, c.version, c.status, c.severity, c.department_id, "
                    "extract(epoch FROM now() - c.updated_at) AS idle, t.handle_h, "
                    "cat.default_department_id, "
                    # Joint handling: the next department that still owes its feedback.
                    "(SELECT a.department_id FROM case_assignment a WHERE a.case_id = c.id "
                    "AND a.fed_back_at IS NULL ORDER BY a.is_lead DESC, a.department_id "
                    'LIMIT 1) AS owing FROM "case" c '
                    "JOIN category cat ON cat.id = c.category_id "
                    "LEFT JOIN time_limit t ON t.category_id = c.category_id "
                    "AND t.severity = c.severity "
                    "WHERE c.status = ANY(:s) ORDER BY c.updated_at LIMIT 500"
                ),
                {"s": statuses},
            ).all()
        for row in rows:
            if self._stop.is_set():
                return
            if float(row.idle) * self.speed < self._delay(row):
                continue
            self._advance(row)

    def _delay(self, row) -> float:
        """This case's own delay in its status: reproducible, exponentially spread."""
        digest = hashlib.blake2b(
            f"{row.number}/{row.status}/{row.version}".encode(), digest_size=8
        ).digest()
        u = (int.from_bytes(digest, "big") + 1) / 2**64
        if row.status == "in_progress":
            # Handling takes about half the limit, sometimes far longer: a few go overdue.
            median = (row.handle_h or 24) * 3600 * 0.45
            z = math.sqrt(-2 * math.log(u)) * math.cos(2 * math.pi * (u * 7919 % 1))
            return median * math.exp(0.75 * z)
        mean = DELAYS.get(row.status, 1800) * SEVERITY_FACTOR.get(row.severity, 1.0)
        return -math.log(u) * mean

    def _advance(self, row) -> None:
        a = self._actors
        step: tuple[Actor | None, str, dict]
        if row.status == "reported":
            step = (a.get("intake"), "accept", {})
        elif row.status == "accepted":
            step = (a.get("intake"), "file", {})
        elif row.status == "filed":
            step = (a.get("dispatcher"), "dispatch", {})
        elif row.status == "dispatched":
            step = (a["dept"].get(row.department_id), "acknowledge", {})
        elif row.status == "in_progress":
            step = (
                a["dept"].get(row.owing or row.department_id),
                "feedback",
                {"evidence": "已处置完毕，附现场照片"},
            )
        else:
            fail = self.rng.random() < REWORK_SHARE
            step = (
                a.get("verifier"),
                "verify_fail" if fail else "verify_pass",
                {"reason": "现场复查仍未整改到位"} if fail else {},
            )
        actor, action, params = step
        if actor is None:
            return
        try:
            perform(self.engine, actor, action, row.number, row.version, **params)
            self.stats.actions += 1
        except GridError as exc:
            self.stats.conflicts += 1
            log.debug("simulator step %s on %s: %s", action, row.number, exc.message("en"))

    def _note(self, message: str) -> None:
        """Say what went wrong (log and the last 50 in ``stats.errors``)."""
        log.warning(message)
        self.stats.errors.append(message)
        del self.stats.errors[:-50]


def _one_line(exc: BaseException) -> str:
    """An error as one line (a driver's message runs over several)."""
    from db.errors import GridError

    if isinstance(exc, GridError):
        return exc.message("en")
    orig = getattr(exc, "orig", exc)
    first = (str(orig).strip().splitlines() or [""])[0][:200]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__
