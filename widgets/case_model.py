"""The case queue as a Qt table model: every open case, one row each, live.

Row identity and cost.  Rows are kept in two parallel lists ordered by case
id, so a case's row is found by binary search and inserting or removing one
row is a single ``list.insert``/``del`` (a memmove of pointers: tens of
microseconds at 100,000 rows).  A dict of id → row position would need every
later position rewritten on each removal (O(n) Python work); swapping the
removed row with the last one would silently move another case into the
removed case's row, so the operator's selection would jump to a different
case.  Here a row never changes meaning: an update is ``dataChanged`` for one
row, an insert ``beginInsertRows`` for one row, a removal ``beginRemoveRows``
for one row, and the model is reset only by a (re)load.

Time.  Age and countdown are computed when asked, from one clock reading per
tick, so a repaint shows consistent values.  A 1 s timer emits ONE
``dataChanged`` over the age..countdown columns with display roles only; the
view repaints only visible cells, and ``CaseFilterProxy`` forwards it without
re-testing rows.  Sort keys never depend on the clock (the countdown sorts by
deadline, the age by report time), so ticking never reorders anything.

Colours ride on BackgroundRole and ForegroundRole as pairs (a filled cell
with its own text colour), so they read the same on the dark and the light
theme.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, QTimer
from PySide6.QtGui import QColor, QFont

from console.case_store import CaseRow, CaseStore
from console.i18n import tr
from db.clock import hall_timezone
from db.workflow import (
    SEVERITY_LABELS,
    SOURCE_LABELS,
    STATUS_LABELS,
    Status,
    label,
)

# --- columns ----------------------------------------------------------------

COL_NUMBER, COL_STATUS, COL_CATEGORY, COL_SEVERITY, COL_PLACE = range(5)
COL_DEPARTMENT, COL_AGE, COL_COUNTDOWN, COL_ESCALATION = range(5, 9)
COLUMN_COUNT = 9
COLUMN_TITLES = (
    "编号",
    "状态",
    "类别",
    "紧急程度",
    "街道/网格",
    "处置单位",
    "时长",
    "倒计时",
    "督办",
)
TIME_COLUMNS = (COL_AGE, COL_COUNTDOWN)  # adjacent on purpose: one dataChanged range

_R = Qt.ItemDataRole
CASE_ID_ROLE = int(_R.UserRole) + 1
CASE_ROW_ROLE = int(_R.UserRole) + 2
# Plain ints: ``data`` runs for every painted cell and role, and comparing an
# int with a Qt enum member costs several times an int comparison.
DISPLAY, DECORATION, TOOLTIP = int(_R.DisplayRole), int(_R.DecorationRole), int(_R.ToolTipRole)
FONT, ALIGNMENT = int(_R.FontRole), int(_R.TextAlignmentRole)
BACKGROUND, FOREGROUND = int(_R.BackgroundRole), int(_R.ForegroundRole)
# Roles the clock changes; a multi-row dataChanged limited to these is "repaint only".
TIME_ROLES = [DISPLAY, FOREGROUND, BACKGROUND, TOOLTIP, FONT]
DISPLAY_ONLY_ROLES = frozenset({*TIME_ROLES, DECORATION, ALIGNMENT, int(_R.StatusTipRole)})
# Everything ``data`` answers; the delegate also asks for roles the queue never
# sets (check state, size hint …), and those should cost one set lookup.
ANSWERED_ROLES = frozenset(
    {DISPLAY, DECORATION, TOOLTIP, FONT, ALIGNMENT, BACKGROUND, FOREGROUND}
    | {CASE_ID_ROLE, CASE_ROW_ROLE}
)

# --- colours (background, foreground): readable on dark and light themes -----

WARNING_SHARE = 0.8  # docs/DOMAIN.md §2: yellow at 80 % of the limit, red when overdue
COUNTDOWN_WARNING = (QColor("#f5a623"), QColor("#1a1a1a"))
COUNTDOWN_OVERDUE = (QColor("#d32f2f"), QColor("#ffffff"))
CARD_YELLOW = (QColor("#fdd835"), QColor("#1a1a1a"))
CARD_RED = (QColor("#c62828"), QColor("#ffffff"))
SEVERITY_COLOURS = {
    "urgent": (QColor("#ef6c00"), QColor("#ffffff")),
    "emergency": (QColor("#b71c1c"), QColor("#ffffff")),
}
EMERGENCY_MARK = QColor("#ff1744")
_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren


def current_lang() -> str:
    """'en' when the English table is installed, else 'zh'.

    ``console.i18n`` keeps no language state; asking the installed translator
    for a marker entry ("zh" → "en") cannot drift from what ``tr`` shows.
    """
    return "en" if tr("zh") == "en" else "zh"


# --- sort keys: time-independent, unique (the case id is the last element) ---

_INF = float("inf")
_STATUS_ORDER = {str(s): i for i, s in enumerate(Status)}
_PRESSING = {"emergency": 0, "urgent": 1, "normal": 2}


def priority_key(r: CaseRow) -> tuple:
    """The default order: emergencies jump the queue, then by deadline.

    Ascending deadline puts overdue cases first (their deadline is past) and
    then the nearest deadline, without reading the clock.
    """
    return (r.severity != "emergency", _due(r), r.id)


def _due(r: CaseRow) -> float:
    return _INF if r.due_ts is None else r.due_ts


# Ascending means: text and time columns by value (the countdown by time left,
# so overdue first); severity and escalation most pressing first, because
# that is what an operator clicking those headers is looking for.
SORT_KEYS: dict[int, Callable[[CaseRow], tuple]] = {
    COL_NUMBER: lambda r: (r.number, r.id),
    COL_STATUS: lambda r: (_STATUS_ORDER.get(r.status, 99), _due(r), r.id),
    COL_CATEGORY: lambda r: (r.category_code, r.id),
    COL_SEVERITY: lambda r: (_PRESSING.get(r.severity, 3), _due(r), r.id),
    COL_PLACE: lambda r: (r.street_code or "\uffff", r.grid_code or "\uffff", r.id),
    COL_DEPARTMENT: lambda r: (r.department_code is None, r.department_code or "", r.id),
    COL_AGE: lambda r: (-r.reported_ts, r.id),
    COL_COUNTDOWN: lambda r: (_due(r), r.id),
    COL_ESCALATION: lambda r: (-r.escalation, _due(r), r.id),
}


def sort_key_for(column: int) -> Callable[[CaseRow], tuple]:
    return SORT_KEYS.get(column, priority_key)


# --- time formatting -----------------------------------------------------------


def countdown_state(r: CaseRow, now_ts: float) -> str:
    """'none' (no deadline), 'normal', 'warning' (≥ 80 % used) or 'overdue'."""
    if r.due_ts is None:
        return "none"
    if now_ts >= r.due_ts:
        return "overdue"
    share = r.used_share(now_ts)
    return "warning" if share is not None and share >= WARNING_SHARE else "normal"


class _Texts:
    """Translated templates, looked up once per language instead of per cell."""

    def __init__(self, lang: str):
        self.lang = lang
        self.days = tr("{d}天{h}小时")
        self.hours = tr("{h}小时{m}分")
        self.minutes = tr("{m}分")
        self.minutes_seconds = tr("{m}分{s}秒")
        self.overdue = tr("超时 {t}")
        self.none = "—"
        self.no_place = tr("未定位")
        self.extension = tr("（延期待批）")
        self.onsite = tr("（当场处理）")
        self.cards = {1: tr("黄牌 督办"), 2: tr("红牌 挂牌督办")}
        self.due_tip = tr("本阶段期限：{t}")
        self.titles = [tr(t) for t in COLUMN_TITLES]
        self.statuses = {k: label(STATUS_LABELS, k, lang) for k in STATUS_LABELS}
        self.severities = {k: label(SEVERITY_LABELS, k, lang) for k in SEVERITY_LABELS}
        self.sources = {k: label(SOURCE_LABELS, k, lang) for k in SOURCE_LABELS}

    def duration(self, seconds: float, with_seconds: bool) -> str:
        s = int(max(0.0, seconds))
        d, rest = divmod(s, 86400)
        h, rest = divmod(rest, 3600)
        m, sec = divmod(rest, 60)
        if d:
            return self.days.format(d=d, h=h)
        if h:
            return self.hours.format(h=h, m=m)
        if with_seconds:
            return self.minutes_seconds.format(m=m, s=sec)
        return self.minutes.format(m=m)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, hall_timezone()).strftime("%m-%d %H:%M")


# --- the model -------------------------------------------------------------------


class CaseQueueModel(QAbstractTableModel):
    """Open cases from a ``CaseStore`` (or rows given directly), one row per case."""

    def __init__(
        self,
        store: CaseStore | None = None,
        lang: str | None = None,
        parent: QObject | None = None,
        clock: Callable[[], float] = time.time,
        tick_ms: int = 1000,
    ):
        super().__init__(parent)
        self._ids: list[int] = []  # ascending case ids
        self._rows: list[CaseRow] = []  # parallel to _ids
        self._by_id: dict[int, CaseRow] = {}
        self._clock = clock
        self.now = clock()
        self._texts = _Texts(lang or current_lang())
        self._bold = QFont()
        self._bold.setBold(True)
        self._right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._center = int(Qt.AlignmentFlag.AlignCenter)
        self.timer = QTimer(self)
        self.timer.setInterval(tick_ms)
        self.timer.timeout.connect(self.tick)
        if tick_ms > 0:
            self.timer.start()
        self.store = store
        if store is not None:
            store.loaded.connect(self._on_store_loaded)
            store.case_changed.connect(self.upsert)
            store.row_removed.connect(self.remove)
            if store.is_loaded:
                self.set_rows(store.rows.values())

    # -- contents ------------------------------------------------------------------

    def _on_store_loaded(self) -> None:
        self.set_rows(self.store.rows.values())

    def set_rows(self, rows: Iterable[CaseRow]) -> None:
        """Replace everything (a load): the one place the model resets."""
        ordered = sorted(rows, key=lambda r: r.id)
        self.beginResetModel()
        self._rows = ordered
        self._ids = [r.id for r in ordered]
        self._by_id = {r.id: r for r in ordered}
        self.endResetModel()

    def upsert(self, row: CaseRow) -> None:
        """Insert a case that entered the queue, or update one in place."""
        pos = bisect.bisect_left(self._ids, row.id)
        if pos < len(self._ids) and self._ids[pos] == row.id:
            self._rows[pos] = row
            self._by_id[row.id] = row
            self.dataChanged.emit(self.index(pos, 0), self.index(pos, COLUMN_COUNT - 1), [])
            return
        self.beginInsertRows(QModelIndex(), pos, pos)
        self._ids.insert(pos, row.id)
        self._rows.insert(pos, row)
        self._by_id[row.id] = row
        self.endInsertRows()

    def remove(self, case_id: int) -> None:
        """Drop a case that left the queue; unknown ids are ignored."""
        pos = self.row_of(case_id)
        if pos is None:
            return
        self.beginRemoveRows(QModelIndex(), pos, pos)
        del self._ids[pos]
        del self._rows[pos]
        del self._by_id[case_id]
        self.endRemoveRows()

    def row_of(self, case_id: int) -> int | None:
        pos = bisect.bisect_left(self._ids, case_id)
        return pos if pos < len(self._ids) and self._ids[pos] == case_id else None

    def case_at(self, row: int) -> CaseRow:
        return self._rows[row]

    def get(self, case_id: int) -> CaseRow | None:
        return self._by_id.get(case_id)

    def rows(self) -> list[CaseRow]:
        return list(self._rows)

    # -- clock and language -------------------------------------------------------------

    def tick(self) -> None:
        """Read the clock once; repaint the age and countdown columns (one signal)."""
        self.now = self._clock()
        n = len(self._rows)
        if n:
            self.dataChanged.emit(
                self.index(0, TIME_COLUMNS[0]), self.index(n - 1, TIME_COLUMNS[-1]), TIME_ROLES
            )

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use another clock (tests, replays); takes effect at once."""
        self._clock = clock
        self.tick()

    def set_lang(self, lang: str) -> None:
        self._texts = _Texts(lang)
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, COLUMN_COUNT - 1)
        n = len(self._rows)
        if n:
            self.dataChanged.emit(self.index(0, 0), self.index(n - 1, COLUMN_COUNT - 1), [DISPLAY])

    @property
    def lang(self) -> str:
        return self._texts.lang

    # -- Qt model interface ---------------------------------------------------------------

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else COLUMN_COUNT

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        return _FLAGS

    def headerData(self, section: int, orientation, role: int = DISPLAY):
        if orientation == Qt.Orientation.Horizontal and 0 <= section < COLUMN_COUNT:
            if role == DISPLAY:
                return self._texts.titles[section]
        return None

    def data(self, index: QModelIndex, role: int = DISPLAY):
        if not index.isValid():
            return None
        return self.cell(self._rows[index.row()], index.column(), role)

    def cell(self, r: CaseRow, column: int, role: int):
        """What ``data`` answers for case ``r``; the proxy calls it without an index."""
        if role == DISPLAY:
            return self._text(r, column)
        if role == BACKGROUND or role == FOREGROUND:
            pair = self._colours(r, column)
            if pair is None:
                return None
            return pair[0] if role == BACKGROUND else pair[1]
        if role == FONT:
            if r.severity == "emergency" or (
                column == COL_COUNTDOWN and r.due_ts is not None and r.due_ts <= self.now
            ):
                return self._bold
            return None
        if role == ALIGNMENT:
            if column == COL_AGE or column == COL_COUNTDOWN:
                return self._right
            if column == COL_SEVERITY or column == COL_ESCALATION:
                return self._center
            return None
        if role == DECORATION:
            if column == COL_NUMBER and r.severity == "emergency":
                return EMERGENCY_MARK
            return None
        if role == TOOLTIP:
            return self._tooltip(r, column)
        if role == CASE_ID_ROLE:
            return r.id
        if role == CASE_ROW_ROLE:
            return r
        return None

    # -- cell contents ------------------------------------------------------------------

    def _text(self, r: CaseRow, column: int) -> str:
        t = self._texts
        if column == COL_NUMBER:
            return r.number
        if column == COL_STATUS:
            text = t.statuses.get(r.status, r.status)
            if r.extension_pending:
                text += t.extension
            elif r.onsite and r.status == Status.AWAITING_VERIFICATION:
                text += t.onsite
            return text
        if column == COL_CATEGORY:
            return (r.category_name_en or r.category_name) if t.lang == "en" else r.category_name
        if column == COL_SEVERITY:
            return t.severities.get(r.severity, r.severity)
        if column == COL_PLACE:
            parts = [p for p in (r.street_name, r.grid_name) if p]
            return " / ".join(parts) if parts else t.no_place
        if column == COL_DEPARTMENT:
            if r.department_code is None:
                return t.none
            if t.lang == "en" and r.department_name_en:
                return r.department_name_en
            return r.department_name or r.department_code
        if column == COL_AGE:
            return t.duration(self.now - r.reported_ts, with_seconds=False)
        if column == COL_COUNTDOWN:
            if r.due_ts is None:
                return t.none
            left = r.due_ts - self.now
            if left > 0:
                return t.duration(left, with_seconds=left < 3600)
            return t.overdue.format(t=t.duration(-left, with_seconds=False))
        if column == COL_ESCALATION:
            return t.cards.get(r.escalation, "")
        return ""

    def _colours(self, r: CaseRow, column: int):
        if column == COL_COUNTDOWN:
            state = countdown_state(r, self.now)
            if state == "overdue":
                return COUNTDOWN_OVERDUE
            if state == "warning":
                return COUNTDOWN_WARNING
            return None
        if column == COL_ESCALATION:
            return CARD_RED if r.escalation >= 2 else CARD_YELLOW if r.escalation == 1 else None
        if column == COL_SEVERITY:
            return SEVERITY_COLOURS.get(r.severity)
        return None

    def _tooltip(self, r: CaseRow, column: int) -> str | None:
        t = self._texts
        if column == COL_COUNTDOWN and r.due_ts is not None:
            return t.due_tip.format(t=_when(r.due_ts))
        if column == COL_PLACE:
            return " / ".join(p for p in (r.street_name, r.grid_name, r.grid_code) if p) or None
        if column == COL_NUMBER:
            source = t.sources.get(r.source, r.source)
            return f"{r.description}\n{r.address}\n{source}".strip()
        return None
