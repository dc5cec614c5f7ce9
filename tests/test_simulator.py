"""The simulator keeps the demo alive through the real ingest path and services."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from console.simulator import Simulator
from db.demo_seed import seed_demo
from db.engine import make_engine
from db.locate import locate_grids


@pytest.fixture(scope="module")
def demo(pg_server, template_db):
    name = "t_simulator"
    url = pg_server.create(name, template_db)
    eng = make_engine(url)
    seed_demo(eng, days=1, cases_per_day=80)
    yield eng
    eng.dispose()
    pg_server.drop(name)


def counts(engine):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT (SELECT count(*) FROM positions), (SELECT count(*) FROM latest_position), "
            "(SELECT count(*) FROM \"case\"), (SELECT count(*) FROM case_log)")).one()


def test_patrols_report_positions_inside_their_own_grids(demo):
    sim = Simulator(demo, speed=1.0, seed=5, operators=False, cases_per_day=0).load()
    assert len(sim.walkers) > 500
    before = counts(demo)
    for _ in range(4):
        sim.tick(15.0)  # two reporting intervals in total
    after = counts(demo)
    assert after[0] - before[0] == sim.stats.positions >= 2 * len(sim.walkers) - 5
    assert after[1] >= len(sim.walkers)
    with demo.connect() as conn:
        rows = conn.execute(text(
            "SELECT l.lon, l.lat, w.grid_id FROM latest_position l JOIN device d "
            "ON d.id = l.device_id JOIN worker w ON w.id = d.worker_id")).all()
        located = locate_grids(conn, [(r.lon, r.lat) for r in rows])
    own = sum(1 for r, g in zip(rows, located, strict=True) if g == r.grid_id)
    assert own / len(rows) > 0.9  # paths run between the own grid's cells
    # Walkers moved at walking or cycling speed, not teleported.
    w = sim.walkers[0]
    assert 1.0 <= w.speed_ms <= 4.6


def test_problems_are_reported_and_cases_move_along(demo):
    sim = Simulator(demo, speed=3000.0, seed=9, operators=True, cases_per_day=600).load()
    before = counts(demo)

    def actors() -> set:
        with demo.connect() as conn:
            return set(conn.execute(text(
                "SELECT DISTINCT actor_role FROM case_log WHERE workstation = 'simulator'"
            )).scalars())

    # Tick until every role has had work (a dispatch needs a case filed in an
    # earlier tick), within a bound: the loop, not a lucky first three ticks.
    for _ in range(40):
        sim.tick(1.0)
        sim._last_workflow = 0  # let the workflow run every tick in the test
        if {"intake", "dispatcher", "department"} <= actors():
            break
    after = counts(demo)
    assert sim.stats.reports > 0 and after[2] - before[2] == sim.stats.reports
    assert sim.stats.actions > 0
    assert after[3] - before[3] == sim.stats.reports + sim.stats.actions
    assert {"intake", "dispatcher", "department"} <= actors()


def test_positions_through_the_gateway_over_http(demo, tmp_path):
    """With --gateway, terminals speak the OsmAnd protocol over real HTTP on loopback."""
    from tests.gateway_support import running_gateway

    with running_gateway(demo, tmp_path / "queue") as gw:
        sim = Simulator(demo, speed=1.0, seed=3, operators=False, cases_per_day=0,
                        gateway=f"http://127.0.0.1:{gw.port}").load()
        sim.walkers = sim.walkers[:40]
        before = counts(demo)[0]
        for w in sim.walkers:
            w.next_report_s = 0.0
        sim.tick(0.001)
        assert sim.stats.positions == 40 and sim.stats.errors == []
        assert gw.wait_drained(10)
        assert counts(demo)[0] - before == 40
        sim.stop()


def test_joint_cases_get_every_departments_feedback(demo):
    """A case dispatched to two departments is fed back by both, then verified."""
    from db.case_actions import perform
    from db.users import get_actor

    intake = get_actor(demo, "intake", "t")
    dispatcher = get_actor(demo, "dispatcher", "t")
    with demo.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT (min_lon + max_lon) / 2, (min_lat + max_lat) / 2 FROM unit_cell "
            "WHERE NOT clipped LIMIT 1")).one()
    r = perform(demo, intake, "report", category="S0102", lon=lon, lat=lat, description="联动")
    r = perform(demo, intake, "accept", r.number, r.version)
    r = perform(demo, intake, "file", r.number, r.version)
    r = perform(demo, dispatcher, "dispatch", r.number, r.version, department="huanwei",
                co_departments=["shizheng"])
    sim = Simulator(demo, speed=10_000.0, seed=1, operators=False, cases_per_day=0).load()
    sim.rng.random = lambda: 0.99  # no rework in this test
    for _ in range(6):
        with demo.begin() as conn:  # every step of this case is long overdue
            conn.execute(text('UPDATE "case" SET updated_at = now() - interval \'60 days\' '
                              "WHERE number = :n"), {"n": r.number})
        sim._last_workflow = 0
        sim.tick(0.01)
    with demo.connect() as conn:
        status = conn.execute(text('SELECT status FROM "case" WHERE number = :n'),
                              {"n": r.number}).scalar_one()
        fed = conn.execute(text(
            'SELECT count(*) FROM case_assignment a JOIN "case" c ON c.id = a.case_id '
            "WHERE c.number = :n AND a.fed_back_at IS NOT NULL"), {"n": r.number}).scalar_one()
    assert fed == 2 and status in ("awaiting_verification", "closed")
