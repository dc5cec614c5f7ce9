"""The shift handover (交接班): the report of a shift, handed over with notes by one duty
leader and acknowledged by another, both steps in a hash-chained log the database writes
only for a leader's session."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import text

from db import handover
from db.case_actions import perform
from db.errors import BadInput, Forbidden
from db.users import add_user, authenticate
from tests.cli_runner import main_py
from tests.conftest import PASSWORD
from tests.kpi_support import A, B, console_engine, setup_hall


@pytest.fixture
def shift(engine, db_url, tmp_path):
    """Three live cases through the services, a terminal with a gap, a camera out."""
    setup_hall(engine, tmp_path)
    add_user(engine, "leader2", "leader", PASSWORD, "周值班")
    console = console_engine(db_url)
    who = {n: authenticate(console, n, PASSWORD, f"ws-{n}")
           for n in ("intake1", "dispatcher1", "dept_huanwei", "verifier1", "leader1", "leader2")}

    def act(user, action, number=None, version=None, **kw):
        return perform(console, who[user], action, number, version, **kw)

    # on a whole minute, so the fixes below fall on the minutes the gaps are counted in
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    # L1: dispatched (handling due in 12 h), escalated by the leader
    r = act("intake1", "report", category="S0102", lon=A[0], lat=A[1], description="L1 垃圾")
    r = act("intake1", "accept", r.number, r.version)
    r = act("intake1", "file", r.number, r.version)
    r = act("dispatcher1", "dispatch", r.number, r.version, department="huanwei")
    l1 = act("leader1", "escalate", r.number, r.version, reason="群众多次反映")
    # L2: an emergency, reported and waiting (accepting is due within 0.1 h = 6 min)
    l2 = act("intake1", "report", category="S0102", severity="emergency", lon=B[0], lat=B[1],
             description="L2 紧急")
    # L3: the whole loop, closed
    r = act("intake1", "report", category="S0102", lon=B[0], lat=B[1], description="L3 垃圾")
    for user, action, kw in (("intake1", "accept", {}), ("intake1", "file", {}),
                             ("dispatcher1", "dispatch", {"department": "huanwei"}),
                             ("dept_huanwei", "acknowledge", {}),
                             ("dept_huanwei", "feedback", {"evidence": "已清理"}),
                             ("verifier1", "verify_pass", {})):
        r = act(user, action, r.number, r.version, **kw)
    l3 = r
    with engine.begin() as conn:
        wid = conn.execute(text("SELECT id FROM worker WHERE code = 'W1'")).scalar_one()
        dev = conn.execute(text("INSERT INTO device (identifier, worker_id) VALUES ('T-W1', :w) "
                                "RETURNING id"), {"w": wid}).scalar_one()
        for day in {(start + timedelta(hours=h)).date() for h in (-24, 0, 2, 24)}:
            conn.execute(text("SELECT ensure_position_partition(:d)"), {"d": day})
        # fixes during the first 5 and the last 10 minutes of a 60-minute window: a gap
        for m in [*range(0, 5), *range(50, 60)]:
            conn.execute(text("INSERT INTO positions (device_id, ts, lon, lat) "
                              "VALUES (:d, :t, 116.41, 39.91)"),
                         {"d": dev, "t": start + timedelta(minutes=m)})
        conn.execute(text("INSERT INTO worker_event (device_id, worker_id, kind, at) "
                          "VALUES (:d, :w, 'offline', :t)"),
                     {"d": dev, "w": wid, "t": start + timedelta(minutes=20)})
        conn.execute(text("INSERT INTO camera (code, name, lon, lat, active) VALUES "
                          "('CAM-9', '东四路口', 116.41, 39.91, false)"))
    yield {"engine": engine, "console": console, "who": who, "start": start,
           "l1": l1.number, "l2": l2.number, "l3": l3.number}
    console.dispose()


def test_the_shift_report(shift):
    start = shift["start"]
    end = start + timedelta(hours=2)  # 1.5 h from now: L2's 6 minutes have run out by then
    rep = handover.shift_report(shift["console"], start, end)
    c = rep["counts"]
    assert {r["number"] for r in rep["opened"]} == {shift["l1"], shift["l2"], shift["l3"]}
    assert [r["number"] for r in rep["closed"]] == [shift["l3"]]
    assert {r["number"] for r in rep["open_at_end"]} == {shift["l1"], shift["l2"]}
    assert [r["number"] for r in rep["overdue_at_end"]] == [shift["l2"]]  # L1: due in 12 h
    assert [(r["number"], r["level"]) for r in rep["escalated"]] == [(shift["l1"], 1)]
    assert [r["number"] for r in rep["emergencies"]] == [shift["l2"]]
    # the terminal sent nothing from minute 5 to minute 50, and nothing after minute 60
    assert [g["minutes"] for g in rep["gateway_gaps"]] == [45, 60]
    assert [(t["worker"], t["back"]) for t in rep["terminals_offline"]] == [("王网格", False)]
    assert [cam["code"] for cam in rep["cameras_out"]] == ["CAM-9"]
    assert c == {"opened": 3, "closed": 1, "open_at_end": 2, "overdue_at_end": 1,
                 "escalated": 1, "emergencies": 1, "gateway_gaps": 2, "terminals_offline": 1,
                 "cameras_out": 1}
    earlier = handover.shift_report(shift["console"], start - timedelta(hours=3), start)
    assert earlier["counts"]["opened"] == 0 and earlier["counts"]["open_at_end"] == 0


def test_hand_over_and_take_over_both_go_to_the_chained_log(shift):
    console, who = shift["console"], shift["who"]
    end = datetime.now(UTC)
    start = end - timedelta(hours=12)
    hid = handover.submit(console, who["leader1"], start, end, "L1 督办中，明早复查")
    with pytest.raises(BadInput, match="另一位值班长"):
        handover.acknowledge(console, who["leader1"])  # not the one who handed over
    assert handover.acknowledge(console, who["leader2"], note="已知悉") == hid
    with pytest.raises(BadInput):
        handover.acknowledge(console, who["leader2"], hid)  # once only
    log = handover.handover_log(console)
    assert [(e["action"], e["actor_name"], e["actor_role"]) for e in log] == [
        ("handover", "刘值班", "leader"), ("acknowledge", "周值班", "leader")]
    assert log[0]["notes"] == "L1 督办中，明早复查" and log[1]["workstation"] == "ws-leader2"
    (row,) = handover.handovers(console)
    assert row["incoming_name"] == "周值班" and row["counts"]["opened"] == 3
    assert handover.verify_chain(console) is None


def test_only_a_duty_leaders_session_writes_a_handover(shift, db_url):
    console, who = shift["console"], shift["who"]
    end = datetime.now(UTC)
    with pytest.raises(Forbidden):
        handover.submit(console, who["dispatcher1"], end - timedelta(hours=8), end, "")
    conn = psycopg2.connect(console.url.render_as_string(False).replace("+psycopg2", ""))
    try:
        with conn.cursor() as cur:
            for sql, params in [
                # no session at all
                ("SELECT grid_handover_submit(now() - interval '8 hours', now(), 'x', '{}', '')",
                 None),
                # a dispatcher's session: the database checks the role itself
                ("SELECT set_config('grid.session', %s, false); "
                 "SELECT grid_handover_submit(now() - interval '8 hours', now(), 'x', '{}', '')",
                 (who["dispatcher1"].token,)),
                # no writing around the functions
                ("INSERT INTO shift_handover (shift_start, shift_end, summary, outgoing_id, "
                 "outgoing_name) VALUES (now(), now(), '{}', 1, 'x')", None),
                ("INSERT INTO handover_log (handover_id, action, actor_name, actor_role, "
                 "prev_hash, hash) VALUES (1, 'handover', 'x', 'leader', '', '')", None),
            ]:
                with pytest.raises(psycopg2.Error) as err:
                    cur.execute(sql, params)
                assert err.value.pgcode == "42501", sql
                conn.rollback()
    finally:
        conn.close()
    assert handover.handovers(console) == []


def test_a_rewritten_handover_entry_breaks_the_chain(shift):
    console, who, engine = shift["console"], shift["who"], shift["engine"]
    end = datetime.now(UTC)
    handover.submit(console, who["leader1"], end - timedelta(hours=8), end, "交班正常")
    handover.acknowledge(console, who["leader2"])
    with pytest.raises(Exception, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE handover_log SET notes = '无事' WHERE action = 'handover'"))
    with engine.begin() as conn:  # the owner switches the guard off: the chain still tells
        conn.execute(text("ALTER TABLE handover_log DISABLE TRIGGER handover_log_frozen"))
        first = conn.execute(text(
            "UPDATE handover_log SET notes = '无事' WHERE action = 'handover' RETURNING seq"
        )).scalar_one()
        conn.execute(text("ALTER TABLE handover_log ENABLE ALWAYS TRIGGER handover_log_frozen"))
    assert handover.verify_chain(console) == first


def test_bad_shifts_and_notes_are_refused(shift):
    console, who = shift["console"], shift["who"]
    end = datetime.now(UTC)
    with pytest.raises(BadInput):
        handover.shift_report(console, end, end - timedelta(hours=1))
    with pytest.raises(BadInput):
        handover.shift_report(console, end - timedelta(hours=49), end)
    with pytest.raises(BadInput):
        handover.submit(console, who["leader1"], end - timedelta(hours=8), end, "长" * 4001)
    for bad in ("\u0085", "\u009b", "\u202e", "\u2066"):  # C1 controls, bidi overrides
        with pytest.raises(BadInput) as err:
            handover.submit(console, who["leader1"], end - timedelta(hours=8), end,
                            f"夜间平稳{bad}无事")
        assert "控制字符" in err.value.zh
    with pytest.raises(NotFoundOrBad):
        handover.acknowledge(console, who["leader2"])  # nothing handed over yet


NotFoundOrBad = BadInput  # NotFound is a BadInput (exit 2)


def test_cli_handover_report_notes_ack_and_pdf(shift, db_url, tmp_path):
    from pypdf import PdfReader

    env = {"GRID_DATABASE_URL": db_url, "GRID_PASSWORD": PASSWORD, "GRID_WORKSTATION": "hall-1"}
    out = main_py("handover", "--json", "--hours", "2", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["opened"] == 3
    pdf = tmp_path / "handover.pdf"
    out = main_py("handover", "--user", "leader1", "--notes", "L2 特急待受理", "--pdf", str(pdf),
                  env=env)
    assert out.returncode == 0, out.stderr
    assert "交接班报告" in out.stdout and "本班新增案件: 3" in out.stdout
    text_ = "".join(p.extract_text() for p in PdfReader(pdf).pages)
    assert "交接班报告" in text_ and "L2 特急待受理" in text_ and "刘值班" in text_
    assert shift["l2"] in text_
    out = main_py("handover", "--ack", "--user", "leader2", env=env)
    assert out.returncode == 0, out.stderr
    assert "acknowledged by 周值班" in out.stdout
    again = main_py("handover", "--ack", "--user", "leader2", "--lang", "en", env=env)
    assert again.returncode == 2 and "No handover is waiting" in again.stderr
    wrong = main_py("handover", "--notes", "x", "--user", "dispatcher1", "--lang", "en", env=env)
    assert wrong.returncode == 4 and "Only a duty leader" in wrong.stderr
    bad = main_py("handover", "--shift-end", "tomorrow", env=env)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
