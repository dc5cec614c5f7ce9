"""History from a legacy system: cases with their whole lifecycle, one JSON object a line.

Each line is one case (see README "History import" for the format).  A line is replayed
through the lifecycle of ``db.workflow`` before anything is written: every step must be
legal for its role and for the status it finds, its times must not go backwards (nor lie
in the future), the location must be inside the territory, the category and departments
must exist.  A line that breaks any rule is refused whole, with its line number and the
reason; the others load.  A number already present is left alone, so an import can be
re-run and changes nothing the second time.

Imported cases keep their own numbers, are marked ``imported``, and get a log like any
other case (the owner's connection: the log trigger keeps the file's actors and times
and hash-chains the entries).  The deadlines the file gives (``due``) are the ones in
force for the metrics (``case_import``); without them, deadlines come from the
category's time limits and the event times, as for live cases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from db import validation as v
from db.case_actions import LOG_ORDER_LOCK, _category, _department_id, _limits, _worker_id
from db.clock import hall_timezone
from db.errors import BadInput, GridError
from db.locate import grid_at, in_territory
from db.session import transaction
from db.workflow import ACTIONS, ROLE_LABELS, SEVERITIES, SOURCES, Status, stage_of
from maps.coords import gcj02_to_wgs84

MAX_NUMBER = 20
MAX_EVENTS = 200
MAX_LINE_BYTES = 1_000_000
BATCH = 200  # lines per transaction (each line in a savepoint of its own)
DUE_STAGES = ("file", "dispatch", "handle", "close")
# Which department acts in a department's step, when the event does not say: the lead.
DEPARTMENT_STEPS = ("acknowledge", "return", "feedback", "request_extension")


class LineError(Exception):
    """One line's refusal: the reason in both languages (the line number is added later)."""

    def __init__(self, zh: str, en: str):
        super().__init__(en)
        self.zh, self.en = zh, en


@dataclass
class Refusal:
    line: int
    number: str | None
    zh: str
    en: str

    def message(self, lang: str = "zh") -> str:
        if lang == "zh":
            return f"第 {self.line} 行：{self.zh}"
        return f"line {self.line}: {self.en}"


@dataclass
class ImportSummary:
    lines: int = 0
    loaded: int = 0
    present: list[str] = field(default_factory=list)  # numbers already in the database
    refused: list[Refusal] = field(default_factory=list)
    events: int = 0
    dry_run: bool = False

    def line(self, lang: str = "zh") -> str:
        verb = ("可导入" if self.dry_run else "已导入") if lang == "zh" else (
            "would load" if self.dry_run else "loaded")
        if lang == "zh":
            return (f"{self.lines} 行：{verb} {self.loaded} 件（{self.events} 条记录），"
                    f"已存在 {len(self.present)} 件，拒绝 {len(self.refused)} 行")
        return (f"{self.lines} lines: {verb} {self.loaded} cases ({self.events} log entries), "
                f"{len(self.present)} already present, {len(self.refused)} refused")

    def as_json(self) -> dict:
        return {
            "lines": self.lines,
            "loaded": self.loaded,
            "events": self.events,
            "present": self.present,
            "refused": [{"line": r.line, "number": r.number, "reason": r.en, "reason_zh": r.zh}
                        for r in self.refused],
            "dry_run": self.dry_run,
        }


# --- one line, checked and replayed (no writing) -------------------------------------------


@dataclass
class Planned:
    """What one accepted line will write."""

    line: int
    number: str
    case: dict
    assignments: list[dict]
    log: list[dict]
    due: dict
    record: dict


def _text(obj: dict, name: str, field_name: str, limit: int, required: bool = False) -> str:
    try:
        return v.text_field(obj.get(name), field_name, limit, required)
    except BadInput as exc:
        raise LineError(exc.zh, exc.en) from None


def _time(value, what_zh: str, what_en: str) -> datetime:
    """An ISO-8601 instant; one without an offset is the hall's local time."""
    if not isinstance(value, str) or not value.strip():
        raise LineError(f"{what_zh}缺少时间。", f"{what_en} has no time.")
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise LineError(f"{what_zh}的时间“{value}”不是 ISO-8601。",
                        f"{what_en}: '{value}' is not an ISO-8601 time.") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=hall_timezone())
    return t.astimezone(UTC)


class _Replay:
    """The lifecycle of one case, step by step, as the services would have run it."""

    def __init__(self, conn: Connection, obj: dict, now: datetime, known: set[str]):
        self.conn = conn
        self.obj = obj
        self.now = now
        self.known = known  # numbers earlier lines of this file will create (merge targets)
        self.log: list[dict] = []

    def step_error(self, i: int, action: str, zh: str, en: str) -> LineError:
        return LineError(f"第 {i} 步（{action}）：{zh}", f"step {i} ({action}): {en}")

    def run(self) -> tuple[dict, list[dict], list[dict], dict]:
        o = self.obj
        category = o.get("category")
        if not isinstance(category, str) or not category.strip():
            raise LineError("缺少问题类别（category）。", "No category.")
        severity = o.get("severity") or "normal"
        if severity not in SEVERITIES:
            raise LineError(f"未知紧急程度“{severity}”。", f"Unknown severity '{severity}'.")
        source = o.get("source") or "other"
        if source not in SOURCES:
            raise LineError(f"未知来源“{source}”。", f"Unknown source '{source}'.")
        try:
            cat = _category(self.conn, category.strip())
            limits = _limits(self.conn, cat.id, severity)
            lon, lat = v.coordinates(o.get("lon"), o.get("lat"))
        except BadInput as exc:
            raise LineError(exc.zh, exc.en) from None
        crs = o.get("crs") or "wgs84"
        if crs not in ("wgs84", "gcj02"):
            raise LineError(f"未知坐标系“{crs}”（wgs84 或 gcj02）。",
                            f"Unknown coordinate system '{crs}' (wgs84 or gcj02).")
        if crs == "gcj02":
            lon, lat = gcj02_to_wgs84(lon, lat)
        if not in_territory(self.conn, lon, lat):
            raise LineError(f"位置（{lon:.6f}, {lat:.6f}）不在辖区内。",
                            f"The location ({lon:.6f}, {lat:.6f}) is outside the territory.")
        due = self._due(o.get("due"))
        events = o.get("events")
        if not isinstance(events, list) or not events:
            raise LineError("缺少事件（events）。", "No events.")
        if len(events) > MAX_EVENTS:
            raise LineError(f"事件过多（上限 {MAX_EVENTS}）。",
                            f"Too many events (at most {MAX_EVENTS}).")
        self.cat, self.limits, self.severity = cat, limits, severity
        self.case = {
            "source": source,
            "category_id": cat.id,
            "severity": severity,
            "lon": lon,
            "lat": lat,
            "grid_id": grid_at(self.conn, lon, lat),
            "address": _text(o, "address", "address", v.MAX_ADDRESS),
            "description": _text(o, "description", "description", v.MAX_DESCRIPTION, True),
            "reporter": _text(o, "reporter", "reporter", v.MAX_NAME),
            "reporter_phone": "",
            "status": None,
            "onsite": False,
            "department_id": None,
            "worker_id": None,
            "merged_into_id": None,
            "escalation": 0,
            "rework_count": 0,
            "return_count": 0,
            "extension_pending_h": None,
            "extended_h": 0.0,
            "stage_started_at": None,
            "stage_due_at": None,
            "close_due_at": None,
            "reported_at": None,
            "filed_at": None,
            "dispatched_at": None,
            "feedback_at": None,
            "closed_at": None,
            "evaluation": None,
            "imported": True,
            "reporter_worker_id": None,
        }
        self.assignments: dict[int, dict] = {}
        self.lead: int | None = None
        self.stage_extra = 0.0
        last = None
        for i, ev in enumerate(events, start=1):
            if not isinstance(ev, dict):
                raise LineError(f"第 {i} 步不是对象。", f"step {i} is not an object.")
            action = ev.get("action")
            if action not in ACTIONS:
                raise LineError(f"第 {i} 步：未知操作“{action}”。",
                                f"step {i}: unknown action '{action}'.")
            at = _time(ev.get("at"), f"第 {i} 步", f"step {i}")
            if last is not None and at < last:
                raise self.step_error(i, action, "时间早于上一步（时间不能倒退）。",
                                      "its time is before the previous step's (time goes "
                                      "forward).")
            if at > self.now + timedelta(minutes=5):
                raise self.step_error(i, action, "时间在将来。", "its time is in the future.")
            last = at
            self._step(i, action, ev, at)
        return self.case, self._assignment_rows(), self.log, due

    def _due(self, value) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise LineError("due 须为对象。", "'due' must be an object.")
        unknown = set(value) - set(DUE_STAGES)
        if unknown:
            raise LineError(f"due 中未知阶段：{', '.join(sorted(unknown))}。",
                            f"Unknown stages in 'due': {', '.join(sorted(unknown))}.")
        return {k: _time(value[k], f"due.{k}", f"due.{k}") for k in DUE_STAGES if k in value}

    # -- the steps ------------------------------------------------------------------------

    def _step(self, i: int, action: str, ev: dict, at: datetime) -> None:
        rule = ACTIONS[action]
        role = ev.get("role")
        if role not in ROLE_LABELS:
            raise self.step_error(i, action, f"未知角色“{role}”。", f"unknown role '{role}'.")
        if role not in rule.roles:
            raise self.step_error(
                i, action, f"角色“{role}”无权执行此操作。", f"the {role} role may not take it.")
        actor = ev.get("actor")
        if not isinstance(actor, str) or not actor.strip() or len(actor) > v.MAX_NAME:
            raise self.step_error(i, action, "缺少操作人（actor，最多 60 字）。",
                                  "no actor (at most 60 characters).")
        c = self.case
        status = c["status"]
        if action == "report":
            if i != 1:
                raise self.step_error(i, action, "上报只能是第一步。", "a report comes first.")
        elif i == 1:
            raise self.step_error(i, action, "第一步须为上报（report）。",
                                  "the first step must be the report.")
        elif status not in rule.from_statuses:
            raise self.step_error(i, action, f"案件此时为“{status}”，不能执行。",
                                  f"the case is {status} then; the step does not apply.")
        reason = ev.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise self.step_error(i, action, "原因须为文本。", "the reason must be text.")
        reason = (reason or "").strip() or None
        if reason and len(reason) > v.MAX_REASON:
            raise self.step_error(i, action, "原因过长。", "the reason is too long.")
        if rule.needs_reason and not reason:
            raise self.step_error(i, action, "须填写原因（reason）。", "a reason is required.")
        payload: dict = {}
        to = getattr(self, f"_{action}")(i, ev, at, payload)
        self.log.append({
            "action": action,
            "from_status": status,
            "to_status": str(to),
            "actor_name": actor.strip(),
            "actor_role": role,
            "at": at,
            "reason": reason,
            "payload": payload,
        })

    def _enter(self, status: str, at: datetime, keep_stage: bool = False) -> str:
        """Move to ``status``; a new stage starts unless the clock runs on (acknowledge)."""
        c = self.case
        c["status"] = status
        if not keep_stage:
            stage = stage_of(status)
            c["stage_started_at"] = at
            hours = getattr(self.limits, f"{stage}_h") if stage else None
            c["stage_due_at"] = at + timedelta(hours=hours) if hours is not None else None
        return status

    def _department(self, i: int, ev: dict, action: str, key: str = "department") -> int | None:
        code = ev.get(key)
        if code in (None, ""):
            return None
        try:
            return _department_id(self.conn, code)
        except BadInput as exc:
            raise self.step_error(i, action, exc.zh, exc.en) from None

    def _acting(self, i: int, ev: dict, action: str) -> int:
        dept = self._department(i, ev, action) or self.lead
        if dept is None or dept not in self.assignments:
            raise self.step_error(i, action, "该单位未承办此案件。",
                                  "the case is not assigned to that department.")
        return dept

    def _report(self, i, ev, at, payload) -> str:
        c = self.case
        onsite = bool(ev.get("onsite"))
        c["reported_at"] = at
        c["onsite"] = onsite
        worker = ev.get("worker")
        if worker not in (None, ""):
            try:
                c["reporter_worker_id"] = _worker_id(self.conn, worker)
            except BadInput as exc:
                raise self.step_error(i, "report", exc.zh, exc.en) from None
        payload.update(category=self.obj["category"].strip(), severity=self.severity,
                       source=c["source"], onsite=onsite, attachments=0, imported=True)
        if onsite:
            c["filed_at"] = c["feedback_at"] = at
            c["close_due_at"] = at + timedelta(hours=self.limits.close_h)
            return self._enter(Status.AWAITING_VERIFICATION, at)
        return self._enter(Status.REPORTED, at)

    def _accept(self, i, ev, at, payload) -> str:
        return self._enter(Status.ACCEPTED, at)

    def _reject(self, i, ev, at, payload) -> str:
        self.case.update(stage_due_at=None, closed_at=at, status=Status.REJECTED)
        return Status.REJECTED

    def _merge(self, i, ev, at, payload) -> str:
        into = ev.get("into")
        if not isinstance(into, str) or not into.strip():
            raise self.step_error(i, "merge", "须指定合并到的案件（into）。",
                                  "name the case it merges into ('into').")
        into = into.strip()
        if into == self.obj.get("number"):
            raise self.step_error(i, "merge", "不能合并到自己。",
                                  "a case cannot merge into itself.")
        target = self.conn.execute(
            text('SELECT id, status FROM "case" WHERE number = :n'), {"n": into}).first()
        if target is None and into not in self.known:
            raise self.step_error(i, "merge", f"案件“{into}”不存在。",
                                  f"no case numbered '{into}'.")
        if target is not None and target.status in (Status.MERGED, Status.REJECTED):
            raise self.step_error(i, "merge", f"案件 {into} 不能作为合并目标。",
                                  f"case {into} cannot be merged into.")
        self.case.update(stage_due_at=None, closed_at=at, status=Status.MERGED)
        self.case["merged_into"] = into
        payload["into"] = into
        return Status.MERGED

    def _file(self, i, ev, at, payload) -> str:
        c = self.case
        c["filed_at"] = at
        c["close_due_at"] = at + timedelta(hours=self.limits.close_h)
        return self._enter(Status.FILED, at)

    def _assign(self, i, ev, at, payload, action) -> str:
        lead = self._department(i, ev, action)
        if lead is None:
            lead = self.cat.default_department_id
            if lead is None:
                raise self.step_error(i, action, "未指定处置单位（department）。",
                                      "no department given.")
        co_codes = ev.get("co_departments") or []
        if isinstance(co_codes, str):
            co_codes = [co_codes]
        if not isinstance(co_codes, list):
            raise self.step_error(i, action, "co_departments 须为列表。",
                                  "'co_departments' must be a list.")
        co = []
        for code in co_codes:
            d = self._department(i, {"department": code}, action)
            if d is not None and d != lead and d not in co:
                co.append(d)
        worker = None
        if ev.get("worker") not in (None, ""):
            try:
                worker = _worker_id(self.conn, ev.get("worker"))
            except BadInput as exc:
                raise self.step_error(i, action, exc.zh, exc.en) from None
        self.lead = lead
        self.assignments = {
            d: {"is_lead": d == lead, "assigned_at": at, "acknowledged_at": None,
                "fed_back_at": None, "feedback": None}
            for d in [lead, *co]
        }
        self.case.update(department_id=lead, worker_id=worker, dispatched_at=at)
        payload.update(department_id=lead, co_department_ids=co, worker_id=worker)
        self.stage_extra = 0.0
        return self._enter(Status.DISPATCHED, at)

    def _dispatch(self, i, ev, at, payload) -> str:
        return self._assign(i, ev, at, payload, "dispatch")

    def _reassign(self, i, ev, at, payload) -> str:
        return self._assign(i, ev, at, payload, "reassign")

    def _acknowledge(self, i, ev, at, payload) -> str:
        dept = self._acting(i, ev, "acknowledge")
        mine = self.assignments[dept]
        if mine["acknowledged_at"] is not None:
            raise self.step_error(i, "acknowledge", "该单位已签收。",
                                  "that department has already acknowledged it.")
        mine["acknowledged_at"] = at
        payload["department_id"] = dept
        return self._enter(Status.IN_PROGRESS, at, keep_stage=True)

    def _return(self, i, ev, at, payload) -> str:
        dept = self._acting(i, ev, "return")
        self.assignments = {}
        self.lead = None
        c = self.case
        c.update(department_id=None, worker_id=None, return_count=c["return_count"] + 1)
        payload["department_id"] = dept
        return self._enter(Status.FILED, at)

    def _feedback(self, i, ev, at, payload) -> str:
        dept = self._acting(i, ev, "feedback")
        mine = self.assignments[dept]
        if mine["fed_back_at"] is not None:
            raise self.step_error(i, "feedback", "该单位已反馈。",
                                  "that department has already fed back.")
        evidence = ev.get("evidence")
        evidence = evidence.strip()[: v.MAX_DESCRIPTION] if isinstance(evidence, str) else ""
        mine["fed_back_at"] = at
        mine["feedback"] = evidence or None
        if mine["acknowledged_at"] is None:
            mine["acknowledged_at"] = at
        pending = sum(1 for a in self.assignments.values() if a["fed_back_at"] is None)
        payload.update(department_id=dept, evidence=evidence, attachments=0, waiting_for=pending)
        if pending:
            return self.case["status"]  # joint handling: waits for every department
        self.case["feedback_at"] = at
        return self._enter(Status.AWAITING_VERIFICATION, at)

    def _verify_pass(self, i, ev, at, payload) -> str:
        self.case.update(closed_at=at, stage_due_at=None, status=Status.CLOSED)
        return Status.CLOSED

    def _verify_fail(self, i, ev, at, payload) -> str:
        c = self.case
        for a in self.assignments.values():
            a.update(acknowledged_at=None, fed_back_at=None, feedback=None)
        c.update(rework_count=c["rework_count"] + 1, feedback_at=None)
        self.stage_extra = 0.0
        return self._enter(Status.DISPATCHED, at)

    def _close(self, i, ev, at, payload) -> str:
        self.case.update(closed_at=at, stage_due_at=None, status=Status.CLOSED)
        payload["forced"] = True
        return Status.CLOSED

    def _archive(self, i, ev, at, payload) -> str:
        evaluation = ev.get("evaluation")
        if evaluation not in (None, "satisfied", "basically_satisfied", "dissatisfied"):
            raise self.step_error(i, "archive", f"未知评价“{evaluation}”。",
                                  f"unknown evaluation '{evaluation}'.")
        self.case["evaluation"] = evaluation
        payload["evaluation"] = evaluation
        self.case["status"] = Status.ARCHIVED
        return Status.ARCHIVED

    def _escalate(self, i, ev, at, payload) -> str:
        c = self.case
        level = ev.get("level")
        if level is None:
            level = min(c["escalation"] + 1, 2)
        if not isinstance(level, int) or isinstance(level, bool) or level not in (1, 2) \
                or level <= c["escalation"]:
            raise self.step_error(i, "escalate", "督办级别须为 1 或 2，且高于当前级别。",
                                  "the level is 1 or 2 and above the current one.")
        payload.update(level=level, previous=c["escalation"])
        c["escalation"] = level
        return c["status"]

    def _request_extension(self, i, ev, at, payload) -> str:
        self._acting(i, ev, "request_extension")
        c = self.case
        if c["extension_pending_h"] is not None:
            raise self.step_error(i, "request_extension", "已有待审批的延期申请。",
                                  "an extension request is already pending.")
        try:
            hours = v.hours(ev.get("hours"))
        except BadInput as exc:
            raise self.step_error(i, "request_extension", exc.zh, exc.en) from None
        c["extension_pending_h"] = hours
        payload["hours"] = hours
        return c["status"]

    def _approve_extension(self, i, ev, at, payload) -> str:
        c = self.case
        hours = c["extension_pending_h"]
        if hours is None:
            raise self.step_error(i, "approve_extension", "没有待审批的延期申请。",
                                  "no extension request is pending.")
        approved = ev.get("approved", True)
        if not isinstance(approved, bool):
            raise self.step_error(i, "approve_extension", "approved 须为 true 或 false。",
                                  "'approved' is true or false.")
        c["extension_pending_h"] = None
        if approved:
            delta = timedelta(hours=hours)
            c["extended_h"] += hours
            if c["stage_due_at"] is not None:
                c["stage_due_at"] += delta
            if c["close_due_at"] is not None:
                c["close_due_at"] += delta
        payload.update(hours=hours, approved=approved)
        return c["status"]

    def _assignment_rows(self) -> list[dict]:
        return [{"department_id": d, **a} for d, a in self.assignments.items()]


def plan_line(conn: Connection, raw: str, line: int, now: datetime, known: set[str]) -> Planned:
    """Check and replay one line; ``LineError`` when it breaks a rule."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        raise LineError("行过长（上限 1 MB）。", "The line is too long (at most 1 MB).")
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LineError(f"不是有效的 JSON（第 {exc.colno} 列）。",
                        f"Not valid JSON (column {exc.colno}).") from None
    if not isinstance(obj, dict):
        raise LineError("每行须为一个 JSON 对象。", "Each line must be one JSON object.")
    number = obj.get("number")
    if not isinstance(number, str) or not number.strip() or len(number.strip()) > MAX_NUMBER \
            or any(ch.isspace() or ord(ch) < 32 for ch in number.strip()):
        raise LineError(f"案件编号须为 1–{MAX_NUMBER} 个字符且不含空白。",
                        f"The number must be 1–{MAX_NUMBER} characters without spaces.")
    obj["number"] = number.strip()
    case, assignments, log, due = _Replay(conn, obj, now, known).run()
    case["number"] = obj["number"]
    return Planned(line, obj["number"], case, assignments, log, due, obj)


# --- writing ------------------------------------------------------------------------------

_CASE_COLUMNS = (
    "number", "source", "category_id", "severity", "lon", "lat", "grid_id", "address",
    "description", "reporter", "reporter_phone", "status", "onsite", "department_id",
    "worker_id", "merged_into_id", "escalation", "rework_count", "return_count",
    "extension_pending_h", "extended_h", "stage_started_at", "stage_due_at", "close_due_at",
    "reported_at", "filed_at", "dispatched_at", "feedback_at", "closed_at", "evaluation",
    "version", "updated_at", "imported", "reporter_worker_id",
)
_INSERT_CASE = (
    f'INSERT INTO "case" ({", ".join(_CASE_COLUMNS)}) VALUES '
    f"({', '.join('%(' + c + ')s' for c in _CASE_COLUMNS)}) RETURNING id"
)
_INSERT_LOG = (
    "INSERT INTO case_log (case_id, case_number, action, from_status, to_status, case_version, "
    "actor_id, actor_name, actor_role, workstation, at, reason, payload) VALUES "
    "(%(case_id)s, %(number)s, %(action)s, %(from_status)s, %(to_status)s, %(version)s, NULL, "
    "%(actor_name)s, %(actor_role)s, %(workstation)s, %(at)s, %(reason)s, %(payload)s)"
)


def _write(conn: Connection, p: Planned, source_file: str) -> None:
    c = dict(p.case)
    into = c.pop("merged_into", None)
    if into is not None:
        c["merged_into_id"] = conn.execute(
            text('SELECT id FROM "case" WHERE number = :n'), {"n": into}).scalar_one()
    c["version"] = len(p.log)
    c["updated_at"] = p.log[-1]["at"]
    if c["status"] not in ("reported", "accepted", "filed", "dispatched", "in_progress",
                           "awaiting_verification"):
        c["stage_due_at"] = None
    case_id = conn.exec_driver_sql(_INSERT_CASE, c).scalar_one()
    for a in p.assignments:
        conn.execute(
            text("INSERT INTO case_assignment (case_id, department_id, is_lead, assigned_at, "
                 "acknowledged_at, fed_back_at, feedback) VALUES (:c, :d, :l, :a, :k, :f, :fb)"),
            {"c": case_id, "d": a["department_id"], "l": a["is_lead"], "a": a["assigned_at"],
             "k": a["acknowledged_at"], "f": a["fed_back_at"], "fb": a["feedback"]},
        )
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOG_ORDER_LOCK})
    station = f"import:{Path(source_file).name}"[:100]
    for version, entry in enumerate(p.log, start=1):
        conn.exec_driver_sql(_INSERT_LOG, {
            **entry,
            "case_id": case_id,
            "number": p.number,
            "version": version,
            "workstation": station,
            "payload": json.dumps(entry["payload"], ensure_ascii=False),
        })
    conn.execute(
        text("INSERT INTO case_import (case_id, source_file, line, due_file, due_dispatch, "
             "due_handle, due_close, record) VALUES (:c, :f, :l, :df, :dd, :dh, :dc, "
             "CAST(:r AS jsonb))"),
        {"c": case_id, "f": str(source_file)[:500], "l": p.line, "df": p.due.get("file"),
         "dd": p.due.get("dispatch"), "dh": p.due.get("handle"), "dc": p.due.get("close"),
         "r": json.dumps(p.record, ensure_ascii=False)},
    )


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        with path.open("r", encoding="utf-8") as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError:
        raise BadInput(f"找不到文件 {path}。", f"No such file: {path}.") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path} 不是 UTF-8 文本。", f"{path} is not UTF-8 text.") from None
    except OSError as exc:
        raise BadInput(f"无法读取 {path}：{exc.strerror}", f"Cannot read {path}: "
                       f"{exc.strerror}") from None


def import_history(engine: Engine, path, dry_run: bool = False) -> ImportSummary:
    """Load ``path`` (JSON lines); refused lines are reported, the rest loads.

    The engine must carry the owner's credentials: imported history has actors and
    times of its own, which only the owner's writes keep.
    """
    path = Path(path)
    summary = ImportSummary(dry_run=dry_run)
    with engine.connect() as conn:
        owner = conn.execute(text("SELECT grid_is_owner()")).scalar()
    if not owner:
        from db.errors import Forbidden

        raise Forbidden("导入历史需要数据库属主的凭据。",
                        "Importing history needs the database owner's credentials.")
    seen: set[str] = set()
    batch: list[tuple[int, str]] = []

    def flush() -> None:
        if not batch:
            return
        with transaction(engine) as conn:
            now = conn.execute(text("SELECT now()")).scalar_one()
            numbers = [n for _, n in _numbers(batch)]
            present = set(conn.execute(
                text('SELECT number FROM "case" WHERE number = ANY(:n)'), {"n": numbers}
            ).scalars())
            for line, raw in batch:
                number = _peek_number(raw)
                if number is not None and number in present:
                    summary.present.append(number)
                    continue
                try:
                    savepoint = conn.begin_nested()
                    try:
                        planned = plan_line(conn, raw, line, now, seen)
                        if not dry_run:
                            _write(conn, planned, str(path))
                    except BaseException:
                        savepoint.rollback()
                        raise
                    savepoint.commit()
                except LineError as exc:
                    summary.refused.append(Refusal(line, number, exc.zh, exc.en))
                    continue
                except GridError as exc:
                    summary.refused.append(Refusal(line, number, exc.zh, exc.en))
                    continue
                seen.add(planned.number)
                present.add(planned.number)
                summary.loaded += 1
                summary.events += len(planned.log)
        batch.clear()

    for line, raw in _lines(path):
        summary.lines = line
        if not raw.strip():
            continue
        batch.append((line, raw))
        if len(batch) >= BATCH:
            flush()
    flush()
    return summary


def _peek_number(raw: str) -> str | None:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None
    n = obj.get("number") if isinstance(obj, dict) else None
    return n.strip() if isinstance(n, str) else None


def _numbers(batch: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(line, n) for line, raw in batch if (n := _peek_number(raw)) is not None]


__all__ = ["ImportSummary", "Refusal", "import_history", "plan_line"]
