"""The operator's case queue: live cache, model, filters, sorting, saved filters.

Everything runs against the real PostgreSQL of the suite: cases are made
through the services (``tests.flows``), filters and orders are checked
against independent SQL, and live changes travel through a real
``console.live.LiveFeed``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from sqlalchemy import text

from console import i18n
from console.case_filter import CaseFilter
from console.case_store import CaseRow, CaseStore
from console.live import LiveFeed
from db.errors import BadInput
from db.saved_filters import delete_filter, list_filters, save_filter
from db.workflow import OPEN_STATUSES
from tests.flows import case_in, report, step
from widgets.app import make_app
from widgets.case_model import (
    COL_AGE,
    COL_CATEGORY,
    COL_COUNTDOWN,
    COL_DEPARTMENT,
    COL_ESCALATION,
    COL_NUMBER,
    COL_PLACE,
    COL_SEVERITY,
    COL_STATUS,
    COUNTDOWN_OVERDUE,
    COUNTDOWN_WARNING,
    TIME_COLUMNS,
    CaseQueueModel,
)
from widgets.case_queue import CaseQueueView

ASC, DESC = Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder
BG, FG = Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole
OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(OPEN_STATUSES)) + ")"


# --- helpers --------------------------------------------------------------------


def loaded_store(qtbot, engine) -> CaseStore:
    store = CaseStore(engine)
    store.load()
    qtbot.waitUntil(lambda: store.is_loaded, timeout=10_000)
    return store


def make_view(qtbot, store, engine, user_id) -> CaseQueueView:
    """A shown queue view whose choices and saved filters have loaded."""
    view = CaseQueueView(store, engine, user_id, lang="zh")
    # The saved filters arrive by a queued signal, so connecting now cannot miss them.
    with qtbot.waitSignal(view.saved_filters_changed, timeout=10_000):
        view.resize(1400, 800)
        view.show()
    qtbot.waitUntil(lambda: view.class_combo.count() > 1, timeout=10_000)
    return view


def teardown(*objects) -> None:
    """Stop feeds, clocks and stores, then delete the Qt objects now (not at exit)."""
    for obj in objects:
        if isinstance(obj, LiveFeed):
            obj.stop()
        elif isinstance(obj, CaseQueueView):
            obj.shutdown()
            obj.close()
        elif isinstance(obj, CaseStore):
            obj.stop()
    for obj in objects:
        if not isinstance(obj, LiveFeed):
            obj.deleteLater()
    QApplication.sendPostedEvents(None, 0)
    QApplication.processEvents()


def sql_ids(engine, where: str = "true", order: str = "c.id", params: dict | None = None):
    """Open case ids by an independent query over the same joins the queue shows."""
    stmt = f"""
        SELECT c.id FROM "case" c
        JOIN category cat ON cat.id = c.category_id
        LEFT JOIN category par ON par.id = cat.parent_id
        LEFT JOIN grid g ON g.id = c.grid_id
        LEFT JOIN community cm ON cm.id = g.community_id
        LEFT JOIN street s ON s.id = cm.street_id
        LEFT JOIN department d ON d.id = c.department_id
        WHERE c.status IN {OPEN_SQL} AND ({where})
        ORDER BY {order}
    """
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(stmt), params or {})]


def add_territory(engine) -> dict[str, list[int]]:
    """Two streets × two communities × two grids, added after the cases exist.

    (A district in the database makes the services check report locations
    against its lattice, so it comes after the reports.)
    """
    grids: dict[str, list[int]] = {}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO district (adcode, name, geometry, area_km2, "
                "min_lon, min_lat, max_lon, max_lat) "
                "VALUES ('110101', '测试区', '{}', 1, 116, 39, 117, 40)"
            )
        )
        for s, street_name in ((1, "东华门街道"), (2, "景山街道")):
            street_code = f"110101{s:03d}"
            street_id = conn.execute(
                text(
                    "INSERT INTO street (code, adcode, name, geometry, "
                    "min_lon, min_lat, max_lon, max_lat) "
                    "VALUES (:c, '110101', :n, '{}', 0, 0, 0, 0) RETURNING id"
                ),
                {"c": street_code, "n": street_name},
            ).scalar_one()
            for m in (1, 2):
                community_code = f"{street_code}{m:03d}"
                community_id = conn.execute(
                    text(
                        "INSERT INTO community (code, street_id, name, geometry, "
                        "min_lon, min_lat, max_lon, max_lat) "
                        "VALUES (:c, :s, :n, '{}', 0, 0, 0, 0) RETURNING id"
                    ),
                    {"c": community_code, "s": street_id, "n": f"{street_name}{m}社区"},
                ).scalar_one()
                for g in (1, 2):
                    grid_id = conn.execute(
                        text(
                            "INSERT INTO grid (code, community_id, name, geometry, "
                            "min_lon, min_lat, max_lon, max_lat) "
                            "VALUES (:c, :m, :n, '{}', 0, 0, 0, 0) RETURNING id"
                        ),
                        {"c": f"{community_code}{g:03d}", "m": community_id, "n": f"网格{g}"},
                    ).scalar_one()
                    grids.setdefault(street_code, []).append(grid_id)
    return grids


VARIANTS = [
    # category, severity, source, description, address
    ("S0102", "normal", "patrol", "路边暴露垃圾", "东四北大街 100 号"),
    ("S0201", "urgent", "hotline", "电线杆上有非法小广告", "朝阳门内大街 5 号"),
    ("B0101", "normal", "public", "上水井盖破损", "王府井大街 8 号"),
    ("S0401", "emergency", "camera", "路面塌陷，车辆绕行", "东单北大街 20 号"),
    ("B0207", "urgent", "patrol", "道路破损坑洼", "Jingshan Front St 3"),
]


def build_queue(engine, actors) -> dict[str, list[int]]:
    """About sixty cases in every state, some overdue, some escalated, on four streets' grids."""
    made: dict[str, list[int]] = {}
    statuses = [
        "reported",
        "accepted",
        "filed",
        "dispatched",
        "in_progress",
        "awaiting_verification",
        "reported",
        "filed",
        "dispatched",
        "closed",
        "archived",
        "rejected",
    ]
    n = 0
    for round_ in range(5):
        for status in statuses:
            category, severity, source, desc, address = VARIANTS[n % len(VARIANTS)]
            overrides = {
                "category": category,
                "severity": severity,
                "source": source,
                "description": f"{desc}（{round_}）",
                "address": address,
            }
            if status == "dispatched" and n % 2:
                # Dispatched to the municipal department instead of the default.
                r = case_in(engine, actors, "filed", **overrides)
                r = step(engine, actors, r, "dispatch", department="shizheng")
            else:
                r = case_in(engine, actors, status, **overrides)
            made.setdefault(status, []).append(r.case_id)
            if status in OPEN_STATUSES and n % 4 == 1:
                r = step(engine, actors, r, "escalate", level=1 + (n % 8 == 1))
            n += 1
    made["merged"] = [case_in(engine, actors, "merged").case_id]
    all_ids = [i for ids in made.values() for i in ids]
    grids = add_territory(engine)
    grid_ids = [g for ids in grids.values() for g in ids]
    with engine.begin() as conn:
        # Spread the cases over the grids, leave every seventh without one.
        for k, case_id in enumerate(all_ids):
            grid = None if k % 7 == 3 else grid_ids[k % len(grid_ids)]
            conn.execute(
                text('UPDATE "case" SET grid_id = :g WHERE id = :i'), {"g": grid, "i": case_id}
            )
        # Some cases overdue (by moving the stage deadline into the past), some
        # near it (≥ 80 % used), the rest with time left.
        conn.execute(
            text(
                "UPDATE \"case\" SET stage_started_at = now() - interval '10 hours', "
                "stage_due_at = now() - (id % 5 + 1) * interval '1 hour' "
                f"WHERE status IN {OPEN_SQL} AND id % 3 = 0"
            )
        )
        conn.execute(
            text(
                "UPDATE \"case\" SET stage_started_at = now() - interval '9 hours', "
                "stage_due_at = now() + (id % 4 + 1) * interval '7 minutes' "
                f"WHERE status IN {OPEN_SQL} AND id % 3 = 1"
            )
        )
    made["_grids"] = grids  # type: ignore[assignment]
    return made


@pytest.fixture
def queue(qtbot, engine, actors):
    """A loaded store and a shown view over about sixty cases; torn down explicitly."""
    make_app()
    made = build_queue(engine, actors)
    store = loaded_store(qtbot, engine)
    view = make_view(qtbot, store, engine, actors["dispatcher1"].id)
    yield view, made
    teardown(view, store)


# --- filters and sorting against SQL -------------------------------------------------


def test_the_queue_holds_exactly_the_open_cases(queue, engine):
    view, made = queue
    assert len(sql_ids(engine)) >= 40
    assert sorted(view.model._ids) == sql_ids(engine)
    assert sorted(view.proxy.visible_ids()) == sql_ids(engine)
    for status in ("closed", "archived", "rejected", "merged"):
        for case_id in made[status]:
            assert view.model.get(case_id) is None


FILTERS = [
    (CaseFilter(statuses={"filed", "dispatched"}), "c.status IN ('filed', 'dispatched')", {}),
    (CaseFilter(category_class="S01"), "par.code = 'S01'", {}),
    (CaseFilter(street_code="110101002"), "s.code = '110101002'", {}),
    (CaseFilter(grid_prefix="110101001002"), "g.code LIKE '110101001002%'", {}),
    (CaseFilter(grid_prefix="001002"), "g.code LIKE '001002%'", {}),  # a prefix, not a part
    (CaseFilter(department_code="shizheng"), "d.code = 'shizheng'", {}),
    (CaseFilter(overdue_only=True), "c.stage_due_at < now()", {}),
    (CaseFilter(escalated_only=True), "c.escalation > 0", {}),
    (CaseFilter(source="hotline"), "c.source = 'hotline'", {}),
    (
        CaseFilter(text="JINGSHAN"),
        "c.number ILIKE :t OR c.description ILIKE :t OR c.address ILIKE :t "
        "OR cat.name ILIKE :t OR cat.name_en ILIKE :t",
        {"t": "%jingshan%"},
    ),
    (CaseFilter(text="垃圾"), "c.description ILIKE :t OR cat.name ILIKE :t", {"t": "%垃圾%"}),
    (
        CaseFilter(overdue_only=True, escalated_only=True, category_class="S04"),
        "c.stage_due_at < now() AND c.escalation > 0 AND par.code = 'S04'",
        {},
    ),
    (
        CaseFilter(statuses={"dispatched", "in_progress"}, department_code="huanwei", text="（1）"),
        "c.status IN ('dispatched', 'in_progress') AND d.code = 'huanwei' "
        "AND c.description LIKE '%（1）%'",
        {},
    ),
    (
        CaseFilter(street_code="110101001", overdue_only=True, source="patrol"),
        "s.code = '110101001' AND c.stage_due_at < now() AND c.source = 'patrol'",
        {},
    ),
]


def test_filters_give_the_same_rows_as_sql(queue, engine):
    view, _ = queue
    nonempty = 0
    for f, where, params in FILTERS:
        view.set_filter(f)
        expected = sql_ids(engine, where, params=params)
        assert sorted(view.proxy.visible_ids()) == expected, (f, where)
        assert view.proxy.rowCount() == len(expected)
        nonempty += bool(expected)
    assert nonempty >= len(FILTERS) - 3  # the combinations really select something
    view.set_filter(CaseFilter())
    assert sorted(view.proxy.visible_ids()) == sql_ids(engine)


def test_filter_bar_widgets_drive_the_filter(queue, engine, qtbot):
    view, _ = queue
    view.class_combo.setCurrentIndex(view.class_combo.findData("S02"))
    view.overdue_check.setChecked(True)
    assert view.filter() == CaseFilter(category_class="S02", overdue_only=True)
    assert sorted(view.proxy.visible_ids()) == sql_ids(
        engine, "par.code = 'S02' AND c.stage_due_at < now()"
    )
    view.overdue_check.setChecked(False)
    view.text_edit.setText("井盖")
    qtbot.waitUntil(lambda: view.filter().text == "井盖", timeout=2000)  # debounced
    assert sorted(view.proxy.visible_ids()) == sql_ids(
        engine, "par.code = 'S02' AND (c.description LIKE '%井盖%' OR cat.name LIKE '%井盖%')"
    )
    view.clear_button.click()
    assert view.filter().is_empty and view.text_edit.text() == ""
    assert view.proxy.rowCount() == len(sql_ids(engine))


EMERGENCY_FIRST = "(c.severity <> 'emergency'), c.stage_due_at ASC NULLS LAST, c.id"
STATUS_ORDER = (
    "array_position(ARRAY['reported','accepted','filed','dispatched','in_progress',"
    "'awaiting_verification']::text[], c.status::text)"
)
SORTS = [
    (COL_NUMBER, 'c.number COLLATE "C", c.id'),
    (COL_STATUS, f"{STATUS_ORDER}, c.stage_due_at NULLS LAST, c.id"),
    (COL_CATEGORY, 'cat.code COLLATE "C", c.id'),
    (
        COL_SEVERITY,
        "CASE c.severity WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, "
        "c.stage_due_at NULLS LAST, c.id",
    ),
    (
        COL_PLACE,
        "coalesce(s.code, U&'\\FFFF') COLLATE \"C\", coalesce(g.code, U&'\\FFFF') COLLATE \"C\", "
        "c.id",
    ),
    (COL_DEPARTMENT, "(d.code IS NULL), coalesce(d.code, '') COLLATE \"C\", c.id"),
    (COL_AGE, "c.reported_at DESC, c.id"),
    (COL_COUNTDOWN, "c.stage_due_at ASC NULLS LAST, c.id"),
    (COL_ESCALATION, "c.escalation DESC, c.stage_due_at NULLS LAST, c.id"),
]


def test_default_order_is_emergency_then_overdue_then_nearest_deadline(queue, engine):
    view, _ = queue
    ids = view.proxy.visible_ids()
    assert ids == sql_ids(engine, order=EMERGENCY_FIRST)
    rows = [view.model.get(i) for i in ids]
    assert rows[0].severity == "emergency"
    normal = [r for r in rows if r.severity != "emergency"]
    overdue = [r.overdue(time.time()) for r in normal]
    assert overdue == sorted(overdue, reverse=True)  # overdue first among the rest
    assert view.table.horizontalHeader().sortIndicatorSection() == -1


def test_sorting_every_column_matches_sql(queue, engine):
    view, _ = queue
    for column, order in SORTS:
        view.table.sortByColumn(column, ASC)
        assert view.proxy.visible_ids() == sql_ids(engine, order=order), column
        view.table.sortByColumn(column, DESC)
        assert view.proxy.visible_ids() == sql_ids(engine, order=order)[::-1], column
    # Sorting and filtering together.
    view.set_filter(CaseFilter(escalated_only=True))
    view.table.sortByColumn(COL_COUNTDOWN, ASC)
    assert view.proxy.visible_ids() == sql_ids(
        engine, "c.escalation > 0", "c.stage_due_at ASC NULLS LAST, c.id"
    )
    view.default_order()
    assert view.proxy.visible_ids() == sql_ids(engine, "c.escalation > 0", EMERGENCY_FIRST)


def test_selection_follows_the_case_through_sorting_and_filtering(queue, qtbot):
    view, _ = queue
    chosen = view.proxy.case_id_at(5)
    with qtbot.waitSignal(view.case_selected, timeout=1000) as blocker:
        assert view.select_case(chosen)
    assert blocker.args == [chosen]
    view.table.sortByColumn(COL_NUMBER, DESC)
    assert view.current_case().id == chosen
    row = view.model.get(chosen)
    view.set_filter(CaseFilter(statuses={row.status}))
    assert view.current_case().id == chosen
    other = "filed" if row.status != "filed" else "reported"
    with qtbot.waitSignal(view.current_case_left, timeout=1000):
        view.set_filter(CaseFilter(statuses={other}))
    assert view.current_case() is None
    assert not view.select_case(chosen)  # filtered out


# --- live: changes through the services arrive row by row ------------------------------


@pytest.fixture
def live_queue(qtbot, engine, actors):
    make_app()
    waiting = case_in(engine, actors, "awaiting_verification")
    reported = report(engine, actors)
    live = LiveFeed(engine)  # before the load: nothing between them is missed
    store = CaseStore(engine)
    live.entries.connect(store.apply_entries)
    live.start()
    store.load()
    qtbot.waitUntil(lambda: store.is_loaded and live.feed.online, timeout=10_000)
    view = make_view(qtbot, store, engine, actors["dispatcher1"].id)
    yield view, store, {"waiting": waiting, "reported": reported}
    qtbot.waitUntil(lambda: store.idle, timeout=10_000)
    teardown(live, view, store)


class Recorder:
    """Counts a model's structural and data signals."""

    def __init__(self, model):
        self.resets = 0
        self.inserted: list[int] = []
        self.removed: list[int] = []
        self.changed_rows: list[int] = []
        model.modelReset.connect(self._reset)
        model.rowsInserted.connect(lambda _p, first, last: self.inserted.append(last - first + 1))
        model.rowsRemoved.connect(lambda _p, first, last: self.removed.append(last - first + 1))
        model.dataChanged.connect(
            lambda tl, br, _roles: self.changed_rows.append(br.row() - tl.row() + 1)
        )

    def _reset(self) -> None:
        self.resets += 1


def test_service_changes_reach_the_model_row_by_row(live_queue, qtbot, engine, actors):
    view, store, cases = live_queue
    model = view.model
    rec = Recorder(model)
    proxy_rec = Recorder(view.proxy)
    model.timer.stop()  # only the live changes' signals are counted here
    queries_before = store.queries
    assert model.rowCount() == 2

    # A new case is inserted.
    new = report(engine, actors, description="新上报的案件")
    qtbot.waitUntil(lambda: model.get(new.case_id) is not None, timeout=5000)
    assert rec.inserted == [1] and model.rowCount() == 3
    assert new.case_id in view.proxy.visible_ids()

    # A status change updates the row in place.
    accepted = step(engine, actors, cases["reported"], "accept")
    qtbot.waitUntil(lambda: model.get(accepted.case_id).status == "accepted", timeout=5000)
    assert model.get(accepted.case_id).version == accepted.version
    assert rec.changed_rows and set(rec.changed_rows) == {1}
    assert rec.inserted == [1] and rec.removed == []

    # A closed case leaves the queue.
    step(engine, actors, cases["waiting"], "verify_pass")
    qtbot.waitUntil(lambda: model.get(cases["waiting"].case_id) is None, timeout=5000)
    assert rec.removed == [1] and model.rowCount() == 2
    assert cases["waiting"].case_id not in view.proxy.visible_ids()

    assert rec.resets == 0 and proxy_rec.resets == 0  # never reloaded
    assert store.queries - queries_before == 3


def test_a_burst_of_entries_costs_one_query(live_queue, qtbot, engine, actors):
    view, store, _ = live_queue
    rec = Recorder(view.model)
    before = store.queries
    # The GUI thread is busy acting, so every entry queues up behind it.
    results = [report(engine, actors, description=f"批量 {k}") for k in range(25)]
    qtbot.waitUntil(lambda: all(view.model.get(r.case_id) for r in results), timeout=10_000)
    assert store.queries - before <= 3
    assert sum(rec.inserted) == 25 and rec.resets == 0


def test_selection_stays_on_its_case_and_is_cleared_when_it_closes(
    live_queue, qtbot, engine, actors
):
    view, _store, cases = live_queue
    waiting = cases["waiting"]
    assert view.select_case(waiting.case_id)
    escalated = step(engine, actors, cases["reported"], "escalate")
    qtbot.waitUntil(lambda: view.model.get(escalated.case_id).escalation == 1, timeout=5000)
    new = report(engine, actors, severity="emergency", category="S0401")
    qtbot.waitUntil(lambda: view.model.get(new.case_id) is not None, timeout=5000)
    assert view.proxy.case_id_at(0) == new.case_id  # an emergency jumps the queue
    assert view.current_case().id == waiting.case_id
    with qtbot.waitSignal(view.current_case_left, timeout=5000) as blocker:
        step(engine, actors, waiting, "verify_pass")
    assert blocker.args == [waiting.case_id]
    assert view.current_case() is None


def test_feed_entries_the_snapshot_already_holds_are_ignored(qtbot, engine, actors):
    make_app()
    made = report(engine, actors)
    live = LiveFeed(engine, start_seq=0)  # replays the whole log
    store = CaseStore(engine)
    live.entries.connect(store.apply_entries)
    store.load()
    qtbot.waitUntil(lambda: store.is_loaded, timeout=10_000)
    live.start()
    try:
        qtbot.waitUntil(lambda: store.entries_seen >= 1 and store.idle, timeout=10_000)
        assert store.queries == 0 and made.case_id in store.rows
    finally:
        teardown(live, store)


# --- countdown colours ------------------------------------------------------------------------


def test_countdown_colours_normal_warning_overdue(qtbot, engine, actors):
    make_app()
    fresh, near, late = (report(engine, actors) for _ in range(3))
    with engine.begin() as conn:
        for r, started, due in (
            (fresh, "1 hour", "-9 hours"),  # 10 % used
            (near, "9 hours", "-1 hour"),  # 90 % used
            (late, "10 hours", "1 hour"),  # overdue by an hour
        ):
            conn.execute(
                text(
                    'UPDATE "case" SET stage_started_at = now() - CAST(:s AS interval), '
                    "stage_due_at = now() - CAST(:d AS interval) WHERE id = :i"
                ),
                {"s": started, "d": due, "i": r.case_id},
            )
    store = loaded_store(qtbot, engine)
    model = CaseQueueModel(store, lang="zh", tick_ms=0)
    try:

        def cell(case_id, role):
            return model.index(model.row_of(case_id), COL_COUNTDOWN).data(role)

        assert cell(fresh.case_id, BG) is None and cell(fresh.case_id, FG) is None
        assert "小时" in cell(fresh.case_id, Qt.ItemDataRole.DisplayRole)
        assert cell(near.case_id, BG) == COUNTDOWN_WARNING[0]
        assert cell(near.case_id, FG) == COUNTDOWN_WARNING[1]
        assert cell(late.case_id, BG) == COUNTDOWN_OVERDUE[0]
        assert cell(late.case_id, FG) == COUNTDOWN_OVERDUE[1]
        assert cell(late.case_id, Qt.ItemDataRole.DisplayRole).startswith("超时 ")

        # Two hours later: the fresh one is at 30 %, the near one is overdue.
        signals = []
        model.dataChanged.connect(lambda tl, br, roles: signals.append((tl, br)))
        later = time.time() + 2 * 3600
        model.set_clock(lambda: later)
        assert len(signals) == 1  # one signal for the whole tick …
        tl, br = signals[0]
        assert (tl.column(), br.column()) == TIME_COLUMNS  # … over the time columns only
        assert (tl.row(), br.row()) == (0, model.rowCount() - 1)
        assert cell(fresh.case_id, BG) is None
        assert cell(near.case_id, BG) == COUNTDOWN_OVERDUE[0]
        assert model.index(model.row_of(near.case_id), COL_AGE).data().endswith("分")
    finally:
        model.timer.stop()
        teardown(model, store)


def _row(**overrides) -> CaseRow:
    now = datetime.now(UTC)
    values = dict(
        id=1,
        number="20261122-00001",
        status="filed",
        category_code="S0102",
        category_name="暴露垃圾",
        category_class="S01",
        kind="event",
        severity="normal",
        source="patrol",
        street_code=None,
        street_name=None,
        grid_code=None,
        grid_name=None,
        department_code=None,
        department_name=None,
        escalation=0,
        reported_at=now - timedelta(hours=3),
        stage_started_at=now - timedelta(hours=2),
        stage_due_at=now + timedelta(hours=2, minutes=13, seconds=30),
        extension_pending=False,
        version=1,
        description="",
        address="",
        lon=116.4,
        lat=39.9,
        onsite=False,
        updated_at=now,
    )
    values.update(overrides)
    return CaseRow(**values)


def test_countdown_and_card_texts(qtbot):
    make_app()
    now = datetime.now(UTC)
    model = CaseQueueModel(lang="zh", tick_ms=0)
    try:
        model.set_rows(
            [
                _row(id=1),
                _row(id=2, stage_due_at=now - timedelta(minutes=35, seconds=10), escalation=1),
                _row(id=3, stage_due_at=None, escalation=2, severity="emergency"),
            ]
        )
        t0 = time.time()
        model.set_clock(lambda: t0)

        def text_(row, column):
            return model.index(row, column).data()

        assert text_(0, COL_COUNTDOWN) == "2小时13分"
        assert text_(1, COL_COUNTDOWN) == "超时 35分"
        assert text_(2, COL_COUNTDOWN) == "—"
        assert text_(0, COL_ESCALATION) == ""
        assert text_(1, COL_ESCALATION) == "黄牌 督办"
        assert text_(2, COL_ESCALATION) == "红牌 挂牌督办"
        assert model.index(2, COL_NUMBER).data(Qt.ItemDataRole.DecorationRole) is not None
        assert model.index(2, COL_SEVERITY).data(BG) is not None
        assert text_(0, COL_AGE) == "3小时0分"
        i18n.install("en")
        model.set_lang("en")
        assert text_(0, COL_COUNTDOWN) == "2 h 13 min"
        assert text_(1, COL_COUNTDOWN) == "overdue 35 min"
        assert text_(1, COL_ESCALATION) == "Yellow card · supervised"
        assert text_(0, COL_STATUS) == "filed"
        assert model.headerData(COL_COUNTDOWN, Qt.Orientation.Horizontal) == "Countdown"
    finally:
        i18n.install("zh")
        teardown(model)


# --- saved filters ------------------------------------------------------------------------------


def test_saved_filters_round_trip_per_user(engine, actors):
    mine, theirs = actors["dispatcher1"].id, actors["intake1"].id
    f = CaseFilter(statuses={"filed"}, department_code="huanwei", overdue_only=True, text="垃圾")
    assert save_filter(engine, mine, "  超时环卫  ", f.to_criteria()) == "超时环卫"
    save_filter(engine, mine, "x" * 60, {})
    save_filter(engine, theirs, "超时环卫", CaseFilter(source="hotline").to_criteria())
    saved = dict(list_filters(engine, mine))
    assert list(saved) == sorted(["超时环卫", "x" * 60])
    assert CaseFilter.from_criteria(saved["超时环卫"]) == f
    assert CaseFilter.from_criteria(dict(list_filters(engine, theirs))["超时环卫"]) == CaseFilter(
        source="hotline"
    )
    # Saving again under the same name replaces it.
    save_filter(engine, mine, "超时环卫", CaseFilter(escalated_only=True).to_criteria())
    assert CaseFilter.from_criteria(dict(list_filters(engine, mine))["超时环卫"]) == CaseFilter(
        escalated_only=True
    )
    assert delete_filter(engine, mine, "超时环卫") is True
    assert delete_filter(engine, mine, "超时环卫") is False
    assert [n for n, _ in list_filters(engine, mine)] == ["x" * 60]
    assert [n for n, _ in list_filters(engine, theirs)] == ["超时环卫"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "请填写筛选名称"),
        ("   ", "请填写筛选名称"),
        ("x" * 61, "筛选名称过长"),
        ("名称\n换行", "控制字符"),
        (None, "必须是文本"),
    ],
)
def test_bad_filter_names_are_refused(engine, actors, name, message):
    uid = actors["dispatcher1"].id
    with pytest.raises(BadInput) as info:
        save_filter(engine, uid, name, {})
    assert message in info.value.zh
    assert info.value.en and info.value.en != info.value.zh
    assert list_filters(engine, uid) == []


def test_other_bad_saved_filter_input_is_refused(engine, actors):
    uid = actors["dispatcher1"].id
    with pytest.raises(BadInput, match="不存在"):
        save_filter(engine, 999_999, "mine", {})
    with pytest.raises(BadInput, match="格式"):
        save_filter(engine, uid, "mine", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="过长"):
        save_filter(engine, uid, "mine", {"text": "x" * 5000})
    assert list_filters(engine, uid) == []


def test_criteria_from_elsewhere_are_read_leniently():
    assert CaseFilter.from_criteria(None) == CaseFilter()
    assert (
        CaseFilter.from_criteria(
            {"statuses": "filed", "overdue_only": "yes", "source": "nowhere", "future": 1}
        )
        == CaseFilter()
    )
    assert CaseFilter.from_criteria({"statuses": ["filed", "closed"]}) == CaseFilter(
        statuses={"filed"}
    )


def test_view_saves_applies_and_deletes_filters_per_user(qtbot, engine, actors):
    make_app()
    case_in(engine, actors, "filed")
    store = loaded_store(qtbot, engine)
    view = make_view(qtbot, store, engine, actors["dispatcher1"].id)
    other = make_view(qtbot, store, engine, actors["dispatcher2"].id)
    try:
        view.set_filter(CaseFilter(statuses={"filed"}, escalated_only=True))
        with qtbot.waitSignal(view.saved_filters_changed, timeout=5000) as blocker:
            view.save_current_filter("已立案督办")
        assert blocker.args == [["已立案督办"]]
        view.set_filter(CaseFilter())
        assert view.apply_saved_filter("已立案督办")
        assert view.filter() == CaseFilter(statuses={"filed"}, escalated_only=True)
        assert view.escalated_check.isChecked()
        assert view.status_picker.statuses() == {"filed"}

        # The other user's list, read after ours was saved, does not have it.
        with qtbot.waitSignal(other.saved_filters_changed, timeout=5000) as blocker:
            other.reload_saved_filters()
        assert blocker.args == [[]]
        assert other.saved_filter_names() == []
        assert other.apply_saved_filter("已立案督办") is False

        with qtbot.waitSignal(view.message, timeout=5000) as blocker:
            view.save_current_filter("")
        assert "请填写筛选名称" in blocker.args[0]
        with qtbot.waitSignal(view.saved_filters_changed, timeout=5000) as blocker:
            view.delete_saved_filter("已立案督办")
        assert blocker.args == [[]]
    finally:
        teardown(view, other, store)
