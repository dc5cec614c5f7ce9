"""The queue's "overdue only" filter picks a case up the moment its deadline passes.

README: the queue "filters by … overdue"; a case is overdue when its stage
deadline is past (DOMAIN: "red when overdue").  That changes with the
clock, not with the data: nothing is written when a deadline passes, so the
row must appear on the clock's tick alone.  Deadlines are put where the test
wants them in its own database; the clock is the model's (``set_clock``/
``tick``, what its 1 s timer does), and once the real one, in a real view.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from PySide6.QtWidgets import QApplication
from sqlalchemy import text

from console.case_filter import CaseFilter
from console.case_store import CaseStore
from console.live import LiveFeed
from tests.flows import report, step
from widgets.app import make_app
from widgets.case_model import CaseQueueModel
from widgets.case_proxy import CaseFilterProxy
from widgets.case_queue import CaseQueueView


def set_due(engine, case_id: int, seconds_from_now: float) -> float:
    """Put the case's stage deadline ``seconds_from_now`` from the database's now; return it."""
    with engine.begin() as conn:
        due = conn.execute(
            text(
                'UPDATE "case" SET stage_due_at = now() + make_interval(secs => :s) '
                "WHERE id = :i RETURNING stage_due_at"
            ),
            {"s": seconds_from_now, "i": case_id},
        ).scalar_one()
    return due.timestamp()


def stage_due(engine, case_id: int) -> float:
    with engine.connect() as conn:
        return (
            conn.execute(text('SELECT stage_due_at FROM "case" WHERE id = :i'), {"i": case_id})
            .scalar_one()
            .timestamp()
        )


def loaded(qtbot, store: CaseStore) -> CaseStore:
    store.load()
    qtbot.waitUntil(lambda: store.is_loaded, timeout=10_000)
    return store


def dispose(*objects) -> None:
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


class Clock:
    """A clock the test moves; the model reads it on each tick."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clocked(qtbot, engine):
    """A loaded store, a model on a test clock (no timer), and an "overdue only" proxy."""
    make_app()
    made = {}

    def build(**criteria):
        store = loaded(qtbot, CaseStore(engine))
        clock = Clock(time.time())
        model = CaseQueueModel(store, lang="zh", clock=clock, tick_ms=0)
        proxy = CaseFilterProxy()
        proxy.setSourceModel(model)
        proxy.set_filter(CaseFilter(overdue_only=True, **criteria))
        made.update(store=store, model=model, proxy=proxy)
        return store, model, proxy, clock

    yield build
    dispose(*(made[k] for k in ("proxy", "model", "store") if k in made))


def test_a_row_appears_on_the_tick_that_passes_its_deadline(clocked, engine, actors):
    late = report(engine, actors, description="已超时")
    soon = report(engine, actors, description="一小时后到期")
    later = report(engine, actors, description="两小时后到期")
    set_due(engine, late.case_id, -60)
    due_soon = set_due(engine, soon.case_id, 3600)
    due_later = set_due(engine, later.case_id, 7200)
    _, model, proxy, clock = clocked()
    assert proxy.visible_ids() == [late.case_id]

    # A second before the deadline: not yet (a deadline is passed, not reached).
    clock.t = due_soon - 1
    model.tick()
    assert proxy.visible_ids() == [late.case_id]
    clock.t = due_soon + 1
    model.tick()
    assert set(proxy.visible_ids()) == {late.case_id, soon.case_id}
    clock.t = due_later + 1
    model.tick()
    assert set(proxy.visible_ids()) == {late.case_id, soon.case_id, later.case_id}
    # Nothing was written: the clock alone brought them in.
    assert all(model.get(c.case_id).version == 1 for c in (late, soon, later))


def test_one_long_jump_admits_every_deadline_it_passes(clocked, engine, actors):
    cases = [report(engine, actors) for _ in range(4)]
    dues = [set_due(engine, c.case_id, 600 * (k + 1)) for k, c in enumerate(cases)]
    _, model, proxy, clock = clocked()
    assert proxy.visible_ids() == []
    clock.t = dues[2] + 1  # past the first three deadlines at once
    model.tick()
    assert set(proxy.visible_ids()) == {c.case_id for c in cases[:3]}


def test_other_criteria_still_hold_when_the_deadline_passes(clocked, engine, actors):
    garbage = report(engine, actors, category="S0102", description="暴露垃圾")  # class S01
    advert = report(engine, actors, category="S0201", description="小广告")  # class S02
    dues = [set_due(engine, c.case_id, 1800) for c in (garbage, advert)]
    _, model, proxy, clock = clocked(category_class="S01")
    clock.t = max(dues) + 1
    model.tick()
    assert proxy.visible_ids() == [garbage.case_id]


def test_a_row_that_stopped_matching_before_its_deadline_stays_out(clocked, engine, actors):
    """A change that leaves the deadline alone but fails another criterion keeps it out."""
    garbage = report(engine, actors, category="S0102", description="暴露垃圾")  # class S01
    due = set_due(engine, garbage.case_id, 1800)
    _, model, proxy, clock = clocked(category_class="S01")
    row = model.get(garbage.case_id)
    # The row as the store would hand it after the case changed class (same deadline).
    model.upsert(replace(row, category_class="S02", version=row.version + 1))
    assert model.get(garbage.case_id).due_ts == due
    clock.t = due + 1
    model.tick()
    assert proxy.visible_ids() == []


def test_a_case_that_moved_on_before_its_deadline_waits_for_its_new_one(qtbot, engine, actors):
    """The deadline the filter waits for is the case's current one, kept up by the feed."""
    make_app()
    moving = report(engine, actors, description="受理后换了新期限")
    leaving = report(engine, actors, description="到期前不予立案")
    old_due = set_due(engine, moving.case_id, 900)
    set_due(engine, leaving.case_id, 900)
    live = LiveFeed(engine)
    store = CaseStore(engine)
    live.entries.connect(store.apply_entries)
    live.start()
    loaded(qtbot, store)
    qtbot.waitUntil(lambda: live.feed.online, timeout=10_000)
    clock = Clock(time.time())
    model = CaseQueueModel(store, lang="zh", clock=clock, tick_ms=0)
    proxy = CaseFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter(CaseFilter(overdue_only=True))
    try:
        assert proxy.visible_ids() == []
        # Before the old deadline: one case is accepted (a new stage with a deadline of
        # its own), the other rejected (it leaves the queue).
        accepted = step(engine, actors, moving, "accept")
        step(engine, actors, leaving, "reject")
        qtbot.waitUntil(
            lambda: (
                model.get(moving.case_id).status == "accepted"
                and model.get(leaving.case_id) is None
            ),
            timeout=10_000,
        )
        new_due = stage_due(engine, moving.case_id)
        assert new_due > old_due + 60  # the accepted stage's limit is hours, not minutes
        assert model.get(moving.case_id).version == accepted.version

        clock.t = old_due + 1  # the old deadline passes: neither shows up
        model.tick()
        assert proxy.visible_ids() == []
        clock.t = new_due + 1  # the new one passes: the accepted case shows up
        model.tick()
        assert proxy.visible_ids() == [moving.case_id]
    finally:
        qtbot.waitUntil(lambda: store.idle, timeout=10_000)
        dispose(live, proxy, model, store)


def test_the_queue_view_picks_it_up_on_the_real_clock(qtbot, engine, actors):
    """The operator's view, its own 1 s timer and the real clock: no reload, no poke."""
    make_app()
    late = report(engine, actors, description="早已超时")
    soon = report(engine, actors, description="几秒后到期")
    far = report(engine, actors, description="一小时后到期")
    set_due(engine, late.case_id, -3600)
    set_due(engine, far.case_id, 3600)
    due = set_due(engine, soon.case_id, 8)  # eight seconds from now
    store = loaded(qtbot, CaseStore(engine))
    view = CaseQueueView(store, engine, actors["dispatcher1"].id, lang="zh")
    view.show()
    try:
        qtbot.waitUntil(lambda: view.class_combo.count() > 1, timeout=10_000)
        view.overdue_check.setChecked(True)
        assert view.filter() == CaseFilter(overdue_only=True)
        appeared: list[float] = []
        view.proxy.rowsInserted.connect(lambda *_: appeared.append(time.time()))
        queries = store.queries
        assert time.time() < due, "setting up took longer than the eight seconds"
        assert view.proxy.visible_ids() == [late.case_id]
        qtbot.waitUntil(lambda: soon.case_id in view.proxy.visible_ids(), timeout=20_000)
        assert appeared and appeared[0] >= due  # not before its deadline
        assert far.case_id not in view.proxy.visible_ids()
        assert store.queries == queries  # the clock brought it, not a reload
    finally:
        dispose(view, store)
