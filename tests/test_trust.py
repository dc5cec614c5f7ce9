"""The database enforces who may do what (issue 9), tried as an attacker at a workstation.

A server with password authentication (SCRAM on loopback) is started for this
module.  Each attack connects with a console's own credentials through psycopg2
directly, not through the services, and must be refused by PostgreSQL and change
nothing.  The same credentials then take real steps through the services, which
must work: the checks stop forgery, not the hall.
"""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.engine import make_engine
from db.users import add_user, authenticate
from tests import scram_server

PW = "trust-pass-1"
DEMO_POINT = {"lon": 116.41, "lat": 39.92}


TEMPLATE = "trust_template"


@pytest.fixture(scope="module")
def scram():
    server = scram_server.start()
    scram_server.prepare(server, TEMPLATE)
    owner = make_engine(server.url(TEMPLATE))
    for user, role, dept in (
        ("intake", "intake", None),
        ("disp", "dispatcher", None),
        ("huanwei", "department", "huanwei"),
        ("shizheng", "department", "shizheng"),
        ("verif", "verifier", None),
        ("lead", "leader", None),
        ("adm", "admin", None),
        ("wallu", "wall", None),
    ):
        add_user(owner, user, role, PW, user, dept)
    owner.dispose()
    yield server
    server.stop()


@pytest.fixture
def trust_db(scram):
    name = f"trust_{uuid.uuid4().hex[:10]}"
    conn = scram.connect("postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    conn.close()
    owner = make_engine(scram.url(name))
    console = make_engine(scram.url(name, "grid_console"))
    yield {"name": name, "owner": owner, "console": console, "server": scram}
    console.dispose()
    owner.dispose()


def _login(db, name: str):
    return authenticate(db["console"], name, PW, f"ws-{name}")


def _dispatched_case(db) -> dict:
    """A case taken to dispatched through the services with console credentials."""
    eng = db["console"]
    intake, disp = _login(db, "intake"), _login(db, "disp")
    r = perform(eng, intake, "report", category="S0102", description="路边暴露垃圾",
                **DEMO_POINT)
    r = perform(eng, intake, "accept", r.number, r.version)
    r = perform(eng, intake, "file", r.number, r.version)
    r = perform(eng, disp, "dispatch", r.number, r.version, department="huanwei")
    return {"number": r.number, "version": r.version, "id": r.case_id}


def _snapshot(db) -> tuple:
    with db["owner"].connect() as conn:
        return (
            conn.execute(text('SELECT count(*), coalesce(sum(version), 0) FROM "case"')).one(),
            conn.execute(text("SELECT count(*), max(seq) FROM case_log")).one(),
            conn.execute(text(
                'SELECT string_agg(status || department_id::text, \',\' ORDER BY id) FROM "case"'
            )).scalar(),
            # the tables beside the case
            conn.execute(text(
                "SELECT string_agg(concat_ws(':', case_id, department_id, is_lead, "
                "acknowledged_at, fed_back_at, feedback), ',' ORDER BY case_id, department_id) "
                "FROM case_assignment")).scalar(),
            conn.execute(text("SELECT count(*) FROM attachment")).scalar(),
            conn.execute(text("SELECT string_agg(day || n, ',' ORDER BY day) FROM case_counter")
                         ).scalar(),
            conn.execute(text("SELECT count(*) FROM audit_check")).scalar(),
        )


def _raw(db, role: str = "grid_console"):
    conn = db["server"].connect(db["name"], role)
    conn.autocommit = False
    return conn


def _refused(db, sql: str, params=None, role: str = "grid_console", session=None,
             action=None) -> str:
    """Run ``sql`` as ``role`` (optionally with a session and declared action); it must fail."""
    before = _snapshot(db)
    conn = _raw(db, role)
    try:
        with conn.cursor() as cur:
            if session is not None:
                cur.execute("SELECT set_config('grid.session', %s, true)", (session,))
            if action is not None:
                cur.execute("SELECT set_config('grid.action', %s, true)", (action,))
            with pytest.raises(psycopg2.Error) as err:
                cur.execute(sql, params)
                conn.commit()  # deferred checks fire here
        conn.rollback()
    finally:
        conn.close()
    assert _snapshot(db) == before, "a refused statement changed something"
    return str(err.value)


# --- the log ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE case_log SET reason = 'rewritten'",
        "DELETE FROM case_log",
        "TRUNCATE case_log",
        "ALTER TABLE case_log DISABLE TRIGGER case_log_no_update",
        "ALTER TABLE case_log DISABLE TRIGGER ALL",
        "DROP TRIGGER case_log_no_update ON case_log",
        "DROP TRIGGER case_guard ON \"case\"",
        "ALTER TABLE \"case\" DISABLE TRIGGER case_guard",
        "CREATE OR REPLACE FUNCTION case_log_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
        "CREATE OR REPLACE FUNCTION grid_case_guard() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE OR REPLACE FUNCTION grid_is_owner() RETURNS boolean "
        "LANGUAGE sql AS $$ SELECT true $$",
        "CREATE TABLE public.mine (x int)",
        "CREATE FUNCTION public.mine() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "SELECT password_hash FROM app_user",
        "SELECT * FROM app_user",
        "SELECT * FROM grid_session",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "COPY case_counter FROM PROGRAM 'echo 20990101,1'",
        "COPY case_counter FROM '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/grid-owned'",
        "SET session_replication_role = replica",
        "SET ROLE grid_owner",
        "SELECT grid_user_add('mallory', 'leader', 'mallory-pw', 'M', NULL)",
    ],
)
def test_a_console_cannot_rewrite_history_or_reach_the_host(trust_db, sql):
    _dispatched_case(trust_db)
    _refused(trust_db, sql)


def test_a_log_row_cannot_be_forged_even_with_a_valid_session(trust_db):
    case = _dispatched_case(trust_db)
    lead = _login(trust_db, "lead")
    forged = (
        "INSERT INTO case_log (case_id, case_number, action, from_status, to_status, "
        "case_version, actor_id, actor_name, actor_role, workstation, payload) VALUES "
        f"({case['id']}, '{case['number']}', 'close', 'dispatched', 'closed', "
        f"{case['version'] + 1}, 1, '刘值班', 'leader', 'LEADER-DESK', '{{}}')"
    )
    _refused(trust_db, forged)  # no session at all
    _refused(trust_db, forged, session=lead.token, action="close")  # case not closed
    # Even a copy of the case's real latest entry: that version is logged already.
    again = forged.replace("'close', 'dispatched', 'closed'", "'dispatch', 'filed', 'dispatched'")
    again = again.replace(f"{case['version'] + 1}, 1", f"{case['version']}, 1")
    disp = _login(trust_db, "disp")
    _refused(trust_db, again, session=disp.token, action="dispatch")


# --- cases outside the checked path ---------------------------------------------------


def _case_at(db, status: str) -> dict:
    """A case taken by the services (console credentials) to ``status``."""
    c = _dispatched_case(db)
    if status == "dispatched":
        return c
    eng = db["console"]
    hw = _login(db, "huanwei")
    r = perform(eng, hw, "acknowledge", c["number"], c["version"])
    r = perform(eng, hw, "feedback", r.number, r.version, evidence="已处理")
    assert r.status == status == "awaiting_verification"
    return {"number": r.number, "version": r.version, "id": r.case_id}


def _forge(db, token: str, action: str, case: dict, to_status: str, sets: str = "",
           version_step: int = 1, log: bool = True, side_sql: str | None = None,
           step: bool = True):
    """A whole action written by hand with a console's credentials: the case row and its
    log entry in one transaction, as the services would write them, with ``side_sql``
    (a write to a table beside the case) between the two, in the services' order; with
    ``step`` false only ``side_sql`` runs.  Returns the error, or None when the database
    accepted it."""
    v = case["version"] + version_step
    conn = _raw(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('grid.session', %s, true), "
                        "set_config('grid.action', %s, true)", (token, action))
            if step:
                cur.execute(
                    f'UPDATE "case" SET status = %s, version = %s{sets} WHERE id = %s',
                    (to_status, v, case["id"]),
                )
            if side_sql is not None:
                cur.execute(side_sql)
            if step and log:
                cur.execute(
                    "INSERT INTO case_log (case_id, case_number, action, from_status, to_status, "
                    "case_version, actor_id, actor_name, actor_role, workstation, payload) "
                    "VALUES (%s, %s, %s, NULL, %s, %s, NULL, 'x', 'x', 'forged', '{}')",
                    (case["id"], case["number"], action, to_status, v),
                )
        conn.commit()
        return None
    except psycopg2.Error as exc:
        conn.rollback()
        return str(exc)
    finally:
        conn.close()


def test_a_hand_written_action_is_accepted_when_it_keeps_every_rule(trust_db):
    """The control: the forging harness itself writes what the rules allow."""
    case = _dispatched_case(trust_db)
    lead = _login(trust_db, "lead")
    assert _forge(trust_db, lead.token, "escalate", case, "dispatched",
                  ", escalation = 1") is None
    with trust_db["owner"].connect() as conn:
        row = conn.execute(text(
            "SELECT actor_name, actor_role, workstation, from_status FROM case_log "
            "ORDER BY seq DESC LIMIT 1")).one()
    # The database wrote who acted and where the step started, whatever the hand-written
    # row said (no "from" status at all).
    assert tuple(row) == ("lead", "leader", "forged", "dispatched")


@pytest.mark.parametrize(
    ("who", "action", "status", "to_status", "sets", "step", "log", "why"),
    [
        ("disp", "verify_pass", "awaiting_verification", "closed", ", closed_at = now()", 1,
         True, "role dispatcher may not verify_pass"),
        ("verif", "reassign", "dispatched", "dispatched", "", 1, True,
         "role verifier may not reassign"),
        ("wallu", "escalate", "dispatched", "dispatched", ", escalation = 1", 1, True,
         "role wall may not escalate"),
        ("lead", "escalate", "dispatched", "dispatched",
         ", escalation = 1, worker_id = NULL, department_id = NULL", 1, True,
         "escalate may not change"),
        ("lead", "escalate", "dispatched", "dispatched",
         ", escalation = 1, stage_due_at = now() + interval '30 days'", 1, True,
         "stage deadlines come from the time limits"),
        ("lead", "close", "dispatched", "archived", ", closed_at = now()", 1, True,
         "close leads to closed"),
        ("lead", "escalate", "dispatched", "dispatched", ", escalation = 1", 5, True,
         "the version rises by exactly one"),
        ("lead", "escalate", "dispatched", "dispatched", ", escalation = 1", 1, False,
         "changed without its log entry"),
        ("shizheng", "acknowledge", "dispatched", "in_progress", "", 1, True,
         "not assigned to this department"),
        ("lead", "close", "dispatched", "closed",
         ", closed_at = now() - interval '3 days'", 1, True, "closed_at is the time"),
    ],
)
def test_case_rows_change_only_through_the_rules(
    trust_db, who, action, status, to_status, sets, step, log, why
):
    case = _case_at(trust_db, status)
    token = _login(trust_db, who).token
    before = _snapshot(trust_db)
    error = _forge(trust_db, token, action, case, to_status, sets, step, log)
    assert error is not None and why in error, error
    assert _snapshot(trust_db) == before


def test_without_a_valid_session_nothing_changes(trust_db):
    case = _dispatched_case(trust_db)
    for token in ("", "0" * 64, _login(trust_db, "lead").token[:-1] + "x"):
        error = _forge(trust_db, token, "escalate", case, "dispatched", ", escalation = 1")
        assert error is not None and "no valid login session" in error
    _refused(trust_db, f'DELETE FROM "case" WHERE id = {case["id"]}')


def test_the_wall_reads_and_writes_nothing(trust_db):
    case = _dispatched_case(trust_db)
    wall_login = authenticate(trust_db["console"], "wallu", PW, "wall")
    for sql in (
        f'UPDATE "case" SET escalation = 1 WHERE id = {case["id"]}',
        "INSERT INTO case_counter VALUES ('20990101', 1)",
        "DELETE FROM presence",
    ):
        _refused(trust_db, sql, role="grid_wall", session=wall_login.token, action="escalate")
    conn = _raw(trust_db, "grid_wall")
    with conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM "case"')
        assert cur.fetchone()[0] == 1
    conn.close()


def test_the_gateway_role_writes_positions_and_nothing_else(trust_db):
    case = _dispatched_case(trust_db)
    for sql in (
        f'UPDATE "case" SET escalation = 1 WHERE id = {case["id"]}',
        "SELECT * FROM case_log",
        "DELETE FROM positions",
        "SELECT grid_drop_positions_before(current_date + 1)",
    ):
        _refused(trust_db, sql, role="grid_gateway")


# --- the tables beside the case --------------------------------------------------------


def _side_attack(db, who: str, action: str, sql: str, case: dict,
                 case_step: str | None = None, to_status: str | None = None):
    """``sql`` on a side table as ``who`` declaring ``action``; with ``case_step`` the
    transaction also takes that legal step on the case (row and log entry), so the side
    write rides on a real change of its case.  Returns the error or None."""
    return _forge(db, _login(db, who).token, action, case, to_status or "",
                  case_step or "", side_sql=sql, step=case_step is not None)


def _department_id(db, code: str) -> int:
    with db["owner"].connect() as conn:
        return conn.execute(text("SELECT id FROM department WHERE code = :c"),
                            {"c": code}).scalar_one()


@pytest.mark.parametrize(
    ("who", "action", "sql", "step", "why"),
    [
        # A department not on the case adds itself (then passes "own department").
        ("shizheng", "feedback",
         "INSERT INTO case_assignment (case_id, department_id, is_lead, assigned_at) "
         "VALUES ({case}, {shizheng}, false, now())", None, "comes only with a change"),
        # The assigned department marks itself fed back without the feedback step.
        ("huanwei", "feedback", "UPDATE case_assignment SET fed_back_at = now() "
         "WHERE case_id = {case}", None, "comes only with a change"),
        # A dispatcher strips a case of its departments, the case untouched.
        ("disp", "dispatch", "DELETE FROM case_assignment WHERE case_id = {case}", None,
         "comes only with a change"),
        # A legal acknowledge that also writes a feedback text into the assignment.
        ("huanwei", "acknowledge", "UPDATE case_assignment SET acknowledged_at = now(), "
         "feedback = '已处理完毕' WHERE case_id = {case}", "", "does not update"),
        # A legal acknowledge by a department that moves the case to itself.
        ("huanwei", "acknowledge", "UPDATE case_assignment SET department_id = {shizheng} "
         "WHERE case_id = {case}", "", "keeps its case, department"),
        # Evidence slipped under a case nobody changed.
        ("huanwei", "feedback", "INSERT INTO attachment (case_id, filename, mime, size, "
         "sha256, data, uploaded_by) VALUES ({case}, 'a.png', 'image/png', 1, 'x', "
         "'\\x00', '刘值班')", None, "comes only with a change"),
        # The day's counter jumps, leaving a hole in the case numbers.
        ("intake", "report", "UPDATE case_counter SET n = n + 100", None,
         "only counts up by one"),
        # Or counts a number no case takes.
        ("intake", "report", "INSERT INTO case_counter VALUES ('20990101', 1)", None,
         "only for the case that takes it"),
        # Nobody but the database records a verification of the chain.
        ("lead", "escalate", "INSERT INTO audit_check (from_seq, to_seq, entries, ok) "
         "VALUES (0, 99, 99, true)", None, "permission denied"),
    ],
)
def test_the_tables_beside_a_case_change_only_with_its_steps(trust_db, who, action, sql, step,
                                                            why):
    case = _dispatched_case(trust_db)
    sql = sql.format(case=case["id"], shizheng=_department_id(trust_db, "shizheng"))
    before = _snapshot(trust_db)
    error = _side_attack(trust_db, who, action, sql, case, step,
                         "in_progress" if step is not None else None)
    assert error is not None and why in error, error
    assert _snapshot(trust_db) == before


def test_the_side_harness_writes_what_a_step_allows(trust_db):
    """The control: the harness's own legal acknowledge, with its assignment write."""
    case = _dispatched_case(trust_db)
    error = _side_attack(trust_db, "huanwei", "acknowledge",
                         f"UPDATE case_assignment SET acknowledged_at = now() "
                         f"WHERE case_id = {case['id']}", case, "", "in_progress")
    assert error is None
    with trust_db["owner"].connect() as conn:
        acked = conn.execute(text("SELECT acknowledged_at IS NOT NULL FROM case_assignment "
                                  "WHERE case_id = :c"), {"c": case["id"]}).scalar_one()
    assert acked


# --- lockout ------------------------------------------------------------------------------


def test_a_rolled_back_login_still_counts_toward_the_lockout(trust_db):
    """Five wrong passwords, each inside a transaction rolled back: still locked."""
    conn = _raw(trust_db)
    try:
        for _ in range(5):
            with conn.cursor() as cur:
                cur.execute("SELECT result FROM grid_login('intake', 'guess', 'ws-x')")
                assert cur.fetchone()[0] == "wrong"
            conn.rollback()  # the attacker undoes the failure count
    finally:
        conn.close()
    from db.errors import Forbidden

    with pytest.raises(Forbidden) as err:
        _login(trust_db, "intake")  # the right password, now refused
    assert "5 分钟" in str(err.value)
    with trust_db["owner"].connect() as conn:  # and the row agrees once it was written
        locked = conn.execute(text("SELECT locked_until > now() FROM app_user "
                                   "WHERE name = 'intake'")).scalar()
    assert locked in (True, None)  # the last row write was rolled back too


# --- the real path works with the same credentials --------------------------------------


def test_every_step_of_the_loop_works_through_the_checked_path(trust_db):
    eng = trust_db["console"]
    intake, disp, hw, sz, verif, lead = (
        _login(trust_db, n) for n in ("intake", "disp", "huanwei", "shizheng", "verif", "lead")
    )
    r = perform(eng, intake, "report", category="S0102", description="井盖缺失", **DEMO_POINT)
    r = perform(eng, intake, "accept", r.number, r.version)
    r = perform(eng, intake, "file", r.number, r.version)
    r = perform(eng, disp, "dispatch", r.number, r.version, department="huanwei",
                co_departments=["shizheng"])
    r = perform(eng, hw, "acknowledge", r.number, r.version)
    r = perform(eng, sz, "acknowledge", r.number, r.version)
    r = perform(eng, hw, "request_extension", r.number, r.version, hours="12",
                reason="需调配设备")
    r = perform(eng, lead, "approve_extension", r.number, r.version, approved=True)
    r = perform(eng, lead, "escalate", r.number, r.version, level=1)
    r = perform(eng, hw, "feedback", r.number, r.version, evidence="已补装")
    assert r.status == "in_progress"  # the joint case waits for shizheng
    r = perform(eng, sz, "feedback", r.number, r.version, evidence="已复核")
    assert r.status == "awaiting_verification"
    r = perform(eng, verif, "verify_fail", r.number, r.version, reason="未压实")
    r = perform(eng, hw, "acknowledge", r.number, r.version)
    r = perform(eng, sz, "acknowledge", r.number, r.version)
    r = perform(eng, hw, "feedback", r.number, r.version, evidence="已返工")
    r = perform(eng, sz, "feedback", r.number, r.version, evidence="已返工")
    r = perform(eng, verif, "verify_pass", r.number, r.version)
    r = perform(eng, intake, "archive", r.number, r.version, evaluation="satisfied")
    assert r.status == "archived"
    # Return, reassign, reject, merge, close by decision.
    a = _dispatched_case(trust_db)
    r = perform(eng, hw, "return", a["number"], a["version"], reason="不属本单位")
    assert r.status == "filed"
    r = perform(eng, disp, "dispatch", r.number, r.version, department="shizheng")
    r = perform(eng, disp, "reassign", r.number, r.version, department="huanwei", reason="改派")
    r = perform(eng, lead, "close", r.number, r.version, reason="领导决定")
    assert r.status == "closed"
    b = perform(eng, intake, "report", category="S0102", description="重复上报", **DEMO_POINT)
    c = perform(eng, intake, "report", category="S0102", description="另一起", **DEMO_POINT)
    perform(eng, intake, "merge", b.number, b.version, into=a["number"])
    perform(eng, intake, "reject", c.number, c.version, reason="非管辖范围")
    # Who and when come from the database session, whatever the client claimed.
    with trust_db["owner"].connect() as conn:
        rows = conn.execute(text(
            "SELECT actor_name, actor_role, client_addr, client_app FROM case_log "
            "WHERE case_number = :n ORDER BY seq"), {"n": r.number}).all()
    assert [row.actor_role for row in rows][:4] == ["intake", "intake", "intake", "dispatcher"]
    assert {row.client_addr for row in rows} == {"127.0.0.1"}


def test_the_escalator_runs_as_the_system_identity(trust_db):
    from db.deadlines import escalate_overdue

    case = _dispatched_case(trust_db)
    with trust_db["owner"].begin() as conn:  # the deadline passed (the owner moves time)
        conn.execute(text(
            "UPDATE \"case\" SET stage_started_at = now() - interval '3 days', "
            "stage_due_at = now() - interval '1 hour' WHERE id = :i"), {"i": case["id"]})
    assert escalate_overdue(trust_db["console"]) == [case["number"]]
    with trust_db["owner"].connect() as conn:
        last = conn.execute(text(
            "SELECT action, actor_role FROM case_log ORDER BY seq DESC LIMIT 1")).one()
    assert tuple(last) == ("auto_escalate", "system")


# --- users --------------------------------------------------------------------------


def test_users_are_managed_only_by_an_administrator(trust_db):
    from db.errors import Forbidden
    from db.users import set_active, set_password

    eng = trust_db["console"]
    lead, adm = _login(trust_db, "lead"), _login(trust_db, "adm")
    with pytest.raises(Forbidden):
        add_user(eng, "mallory", "leader", "mallory-pw", by=lead)
    with pytest.raises(Forbidden):
        add_user(eng, "mallory", "leader", "mallory-pw")  # no session: the console role
    add_user(eng, "newleader", "leader", "newleader-pw", "新值班长", by=adm)
    assert authenticate(eng, "newleader", "newleader-pw").role == "leader"
    # A password change ends the user's other sessions; disabling ends them all.
    old = _login(trust_db, "verif")
    set_password(eng, "verif", "changed-pw-1", by=adm)
    case = _dispatched_case(trust_db)
    with pytest.raises(Forbidden):
        perform(eng, old, "escalate", case["number"], case["version"])
    new = authenticate(eng, "verif", "changed-pw-1")
    set_active(eng, "verif", False, by=adm)
    with pytest.raises(Forbidden):
        authenticate(eng, "verif", "changed-pw-1")
    assert new.token
    with pytest.raises(Forbidden):
        set_active(eng, "adm", False, by=lead)


# --- the chain ------------------------------------------------------------------------


def test_the_owner_rewriting_an_entry_is_detected_at_that_entry(trust_db, tmp_path):
    from db.audit import verify

    _dispatched_case(trust_db)
    _dispatched_case(trust_db)
    anchors = tmp_path / "anchors.jsonl"
    good = verify(trust_db["console"], anchors=anchors)
    assert good.ok and good.entries == 8
    with trust_db["owner"].connect() as conn:
        target = conn.execute(text("SELECT seq FROM case_log ORDER BY seq OFFSET 5 LIMIT 1")
                              ).scalar_one()
    with trust_db["owner"].begin() as conn:  # the owner can: that is why the chain exists
        conn.execute(text("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update"))
        conn.execute(text("UPDATE case_log SET reason = '改写' WHERE seq = :s"), {"s": target})
        conn.execute(text("ALTER TABLE case_log ENABLE ALWAYS TRIGGER case_log_no_update"))
    bad = verify(trust_db["console"], anchors=anchors)
    assert not bad.ok and bad.first_bad_seq == target
    assert "rewritten" in bad.reason
    # The database's own record of each verification agrees: it checked the chain itself.
    with trust_db["owner"].connect() as conn:
        rows = conn.execute(text("SELECT ok, first_bad_seq, entries FROM audit_check "
                                 "ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(True, None, 8), (False, target, 8)]


def test_the_database_records_a_failed_chain_whatever_the_client_says(trust_db):
    """A console calling the recorder with its own "all fine" still records the break."""
    _dispatched_case(trust_db)
    with trust_db["owner"].begin() as conn:
        conn.execute(text("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update"))
        second = conn.execute(text("SELECT seq FROM case_log ORDER BY seq OFFSET 1 LIMIT 1")
                              ).scalar_one()
        conn.execute(text("UPDATE case_log SET actor_name = '别人' WHERE seq = :s"),
                     {"s": second})
        conn.execute(text("ALTER TABLE case_log ENABLE ALWAYS TRIGGER case_log_no_update"))
    with trust_db["console"].begin() as conn:
        row = conn.execute(text("SELECT ok, first_bad_seq, entries FROM "
                                "grid_audit_check(0, NULL)")).one()
    assert tuple(row) == (False, second, 4)



def test_a_logged_out_token_acts_no_more(trust_db):
    from db.errors import Forbidden
    from db.users import logout

    case = _dispatched_case(trust_db)
    lead = _login(trust_db, "lead")
    logout(trust_db["console"], lead)
    with pytest.raises(Forbidden):
        perform(trust_db["console"], lead, "escalate", case["number"], case["version"])


def test_a_temporary_table_cannot_stand_in_for_the_rules(trust_db):
    """PostgreSQL searches the session's own temporary schema first, even under a
    function's ``SET search_path``, unless pg_temp is named last: a console that made
    a temporary ``workflow_rule`` letting a dispatcher verify would have its own rules."""
    case = _case_at(trust_db, "awaiting_verification")
    token = _login(trust_db, "disp").token
    before = _snapshot(trust_db)
    conn = _raw(trust_db)
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("CREATE TEMP TABLE workflow_rule AS SELECT * FROM public.workflow_rule")
                cur.execute("UPDATE pg_temp.workflow_rule SET roles = roles || '{dispatcher}'")
                cur.execute("CREATE TEMP TABLE case_log (LIKE public.case_log)")
            except psycopg2.Error:
                conn.rollback()
                return  # no temporary tables for consoles at all: nothing to shadow
        conn.commit()
    finally:
        conn.close()
    # The temporary tables are the session's: forge in a session that has them.
    conn = _raw(trust_db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE workflow_rule AS SELECT * FROM public.workflow_rule")
            cur.execute("UPDATE pg_temp.workflow_rule SET roles = roles || '{dispatcher}'")
            cur.execute("SELECT set_config('grid.session', %s, true), "
                        "set_config('grid.action', 'verify_pass', true)", (token,))
            with pytest.raises(psycopg2.Error) as err:
                cur.execute('UPDATE "case" SET status = \'closed\', version = version + 1, '
                            'closed_at = now(), stage_due_at = NULL WHERE id = %s', (case["id"],))
                cur.execute(
                    "INSERT INTO case_log (case_id, case_number, action, from_status, "
                    "to_status, case_version, actor_id, actor_name, actor_role, workstation, "
                    "payload) VALUES (%s, %s, 'verify_pass', NULL, 'closed', %s, NULL, 'x', "
                    "'x', 'ws', '{}')", (case["id"], case["number"], case["version"] + 1))
                conn.commit()
        conn.rollback()
    finally:
        conn.close()
    assert "may not verify_pass" in str(err.value) or "permission denied" in str(err.value)
    assert _snapshot(trust_db) == before


def test_every_function_that_sets_a_search_path_names_pg_temp_last(trust_db):
    """The rule behind the test above, for every function a later revision adds: a
    SECURITY DEFINER or trigger function sets its search path, and pg_temp comes last."""
    with trust_db["owner"].connect() as conn:
        rows = conn.execute(text(
            "SELECT p.proname, p.prosecdef, p.prorettype = 'trigger'::regtype AS trig, "
            "(SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%') AS path "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'")).all()
    assert rows
    unset = [r.proname for r in rows if (r.prosecdef or r.trig) and r.path is None]
    assert unset == []
    wrong = [r.proname for r in rows if r.path is not None and not r.path.endswith("pg_temp")]
    assert wrong == []

