"""Database sessions that never hang and fail in words (issue 10: "Database sessions").

A console's connection waits at most ``lock_timeout`` for a case another session
holds ("the case is busy", exit 3), is ended by the server when it idles inside
a transaction, and has keepalives; deadlocks, statement timeouts, lost
connections and the database's refusals are told apart; check-then-insert
races (a user name, the saved-filter limit, a merge target) give one clear
line instead of a driver's error.  Everything against the real PostgreSQL:
locks held by real second sessions, real deadlocks, real timeouts.
"""

from __future__ import annotations

import threading

import psycopg2
import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.engine import IDLE_IN_TRANSACTION_MS, LOCK_TIMEOUT_MS, make_engine
from db.errors import BadInput, Conflict, GridError
from db.saved_filters import MAX_FILTERS_PER_USER, list_filters, save_filter
from db.session import (
    BUSY,
    DEADLOCK,
    TIMED_OUT,
    Busy,
    ConnectionLost,
    Deadlocked,
    TimedOut,
    transaction,
    with_retry,
)
from db.users import add_user
from tests.cli_runner import cli
from tests.conftest import PASSWORD, table_counts, wait_for
from tests.flows import case_in


def raw(db_url: str):
    """A second session of its own (the colleague's console, a stuck tool)."""
    conn = psycopg2.connect(db_url.replace("+psycopg2", ""))
    return conn


def hold_case(db_url: str, number: str):
    """Another session holding the case row's lock, in an open transaction."""
    conn = raw(db_url)
    cur = conn.cursor()
    cur.execute('SELECT id FROM "case" WHERE number = %s FOR UPDATE', (number,))
    return conn


def version_of(engine, number: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text('SELECT version FROM "case" WHERE number = :n'), {"n": number}
        ).scalar_one()


def test_every_connection_carries_timeouts_and_keepalives(engine):
    with engine.connect() as conn:
        settings = dict(conn.execute(text(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('lock_timeout', 'idle_in_transaction_session_timeout')")).all())
        dsn = conn.connection.dbapi_connection.get_dsn_parameters()
    assert settings == {
        "lock_timeout": str(LOCK_TIMEOUT_MS),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
    }
    assert dsn["keepalives"] == "1" and int(dsn["keepalives_idle"]) <= 10
    assert "tcp_keepalives_idle" in dsn["options"]  # the server side too (TCP only)


def test_a_case_held_by_another_session_is_busy_not_a_hang(engine, actors, db_url):
    """Issue: while another session held the case row, ``case act … accept`` was still
    waiting after 15 s.  Now: "the case is busy" after the lock timeout, nothing changed."""
    case = case_in(engine, actors, "reported")
    holder = hold_case(db_url, case.number)
    try:
        with pytest.raises(Busy) as busy:
            perform(engine, actors["intake1"], "accept", case.number, case.version)
        assert isinstance(busy.value, Conflict) and busy.value.exit_code == 3
        assert busy.value.message("zh") == BUSY[0] and busy.value.message("en") == BUSY[1]
        out = cli(db_url, f"case act {case.number} accept --user intake1 --expect-version 1",
                  PASSWORD)
        assert out.returncode == 3 and out.stderr.strip() == "案件正被他人处理，请稍后重试。"
        out = cli(db_url, f"--lang en case act {case.number} accept --user intake1 "
                  "--expect-version 1", PASSWORD)
        assert out.returncode == 3 and out.stderr.strip() == "The case is busy, try again."
    finally:
        holder.rollback()
        holder.close()
    assert version_of(engine, case.number) == case.version  # nothing was changed
    done = perform(engine, actors["intake1"], "accept", case.number, case.version)
    assert done.version == case.version + 1  # and once it is free, it goes through


def test_a_session_left_idle_in_its_transaction_frees_the_case(engine, actors, db_url):
    """A workstation gone mid-transaction (here: idle in it, with a 1 s limit) is ended
    by the server, and the colleague's action then goes through."""
    case = case_in(engine, actors, "reported")
    gone = make_engine(db_url, idle_in_transaction_ms=1000)
    conn = gone.connect()
    try:
        conn.begin()
        conn.execute(text('SELECT id FROM "case" WHERE number = :n FOR UPDATE'),
                     {"n": case.number})
        done = perform(engine, actors["intake1"], "accept", case.number, case.version)
        assert done.version == case.version + 1
    finally:
        try:
            conn.close()
        except Exception:
            pass
        gone.dispose()


@pytest.fixture
def two_rows(engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE rel_lock (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO rel_lock VALUES (1), (2)"))
    yield


def _deadlock_partner(db_url: str, started: threading.Event, go: threading.Event) -> None:
    """Lock row 2, then (when told) row 1; this session never gives up first."""
    conn = raw(db_url)
    try:
        cur = conn.cursor()
        cur.execute("SET deadlock_timeout = '30s'")  # so the other session is the victim
        cur.execute("SELECT 1 FROM rel_lock WHERE id = 2 FOR UPDATE")
        started.set()
        go.wait(30)
        cur.execute("SELECT 1 FROM rel_lock WHERE id = 1 FOR UPDATE")
        conn.commit()
    finally:
        conn.close()


def _waiting_on_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one() > 0


def _deadlocking_transaction(engine, db_url: str, partner_go_first: bool = True) -> None:
    """One transaction that ends in a real deadlock against a second session."""
    started, go = threading.Event(), threading.Event()
    partner = threading.Thread(target=_deadlock_partner, args=(db_url, started, go))
    partner.start()
    try:
        assert started.wait(30)
        with transaction(engine) as conn:
            conn.execute(text("SELECT 1 FROM rel_lock WHERE id = 1 FOR UPDATE"))
            go.set()
            assert wait_for(lambda: _waiting_on_a_lock(engine), 30)  # the partner waits on 1
            conn.execute(text("SELECT 1 FROM rel_lock WHERE id = 2 FOR UPDATE"))
    finally:
        go.set()
        partner.join(30)


def test_a_deadlock_is_a_deadlock_not_a_lost_connection(engine, db_url, two_rows):
    with pytest.raises(Deadlocked) as caught:
        _deadlocking_transaction(engine, db_url)
    assert not isinstance(caught.value, ConnectionLost)
    assert caught.value.exit_code == 3 and caught.value.message("en") == DEADLOCK[1]


def test_a_deadlock_victim_is_run_once_more(engine, db_url, two_rows):
    attempts = []

    def work() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            _deadlocking_transaction(engine, db_url)  # the first run is the victim
        with transaction(engine) as conn:
            return conn.execute(text("SELECT 'done'")).scalar_one()

    assert with_retry(work) == "done"
    assert len(attempts) == 2


def test_a_statement_timeout_is_not_a_lost_connection(engine):
    with engine.connect() as conn:
        before = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with pytest.raises(TimedOut) as caught:
        with transaction(engine) as conn:
            conn.execute(text("SET LOCAL statement_timeout = 100"))
            conn.execute(text("SELECT pg_sleep(5)"))
    assert not isinstance(caught.value, ConnectionLost)
    assert caught.value.exit_code == 5 and caught.value.message("zh") == TIMED_OUT[0]
    with engine.connect() as conn:  # the pooled connection was not thrown away
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() == before


def test_a_lost_connection_is_still_one(engine, db_url):
    killer = raw(db_url)
    killer.autocommit = True
    try:
        with pytest.raises(ConnectionLost):
            with transaction(engine) as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
                conn.execute(text("SELECT 1"))
    finally:
        killer.close()


def test_a_table_locked_by_another_session_is_one_line_from_the_cli(engine, db_url):
    """A driver error outside any service (here ``case list`` behind a table lock) reaches
    the CLI's top level as one line with the exit code that fits, not "internal error"."""
    holder = raw(db_url)
    try:
        holder.cursor().execute('LOCK TABLE "case" IN ACCESS EXCLUSIVE MODE')
        out = cli(db_url, "case list", PASSWORD)
        assert out.returncode == 3, out.stderr
        assert out.stderr.strip() == "案件正被他人处理，请稍后重试。"
    finally:
        holder.rollback()
        holder.close()


# --- check-then-insert races ---------------------------------------------------------------


def _at_once(n: int, work) -> list:
    """Run ``work(i)`` in ``n`` threads released together; what each returned or raised."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_the_same_user_name_added_at_once_is_one_clear_refusal(engine):
    """Issue: ``users add`` with a name taken between the check and the insert gave an
    IntegrityError traceback.  Eight administrators at once: one user, seven refusals."""
    for round_ in range(3):  # the race is real: give it several chances
        name = f"race{round_}"
        results = _at_once(
            8, lambda i, name=name: add_user(engine, name, "intake", "secret-1", f"N{i}"))
        made = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(made) == 1
        assert all(type(r) is BadInput and r.message("en") == f"User '{name}' already exists."
                   for r in refused), refused


def test_the_saved_filter_limit_holds_when_saved_at_once(engine, actors):
    actor = actors["dispatcher1"]
    for k in range(MAX_FILTERS_PER_USER - 1):
        save_filter(engine, actor, f"f{k:03d}", {"status": ["reported"]})
    results = _at_once(8, lambda i: save_filter(engine, actor, f"new{i}", {}))
    saved = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, GridError)]
    assert len(saved) == 1 and len(refused) == 7, results
    assert all(isinstance(r, BadInput) and "At most 100" in r.message("en") for r in refused)
    assert len(list_filters(engine, actor.id)) == MAX_FILTERS_PER_USER


def test_a_merge_target_is_locked_and_checked_again(engine, actors, db_url):
    """Issue: A→B and B→C merged at once left A merged into a merged case.  Here B→C is
    in flight in another session (B locked and being merged); A→B waits for it, sees B
    merged, and is refused; A is unchanged."""
    a = case_in(engine, actors, "reported")
    b = case_in(engine, actors, "reported")
    c = case_in(engine, actors, "reported")
    other = hold_case(db_url, b.number)
    outcome: dict = {}

    def merge_a_into_b() -> None:
        try:
            outcome["ok"] = perform(engine, actors["intake1"], "merge", a.number, a.version,
                                    into=b.number)
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=merge_a_into_b)
    try:
        other.cursor().execute(
            'UPDATE "case" SET status = \'merged\', merged_into_id = '
            '(SELECT id FROM "case" WHERE number = %s), version = version + 1 '
            "WHERE number = %s", (c.number, b.number))
        worker.start()
        # A→B reaches B and must wait there (for the lock or its foreign-key check).
        assert wait_for(lambda: _waiting_on_a_lock(engine) or not worker.is_alive(), 30)
        other.commit()
    finally:
        other.close()
    worker.join(30)
    assert "ok" not in outcome, "A was merged into a case that is itself merged"
    assert isinstance(outcome["error"], BadInput)
    assert b.number in outcome["error"].message("en")
    assert version_of(engine, a.number) == a.version


# --- bad input that once reached the driver ------------------------------------------------


def test_overlong_workstation_and_display_name_are_one_line(engine, db_url):
    before = table_counts(engine)
    line = ("case act - report --user intake1 --category S0102 --lon 116.41 --lat 39.92 "
            "--description 路边垃圾 --workstation " + "w" * 101)
    out = cli(db_url, line, PASSWORD)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "工作站名称过长（101 字，上限 100 字）" in out.stderr
    assert table_counts(engine) == before
    ok = cli(db_url, line.replace("w" * 101, "w" * 100), PASSWORD)
    assert ok.returncode == 0, ok.stderr
    out = cli(db_url, "users add longname --role intake --display-name " + "名" * 70 +
              " --as-owner", PASSWORD)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "显示名最多 60 个字符" in out.stderr and "$" not in out.stderr


@pytest.mark.parametrize("bad", ["\u0085", "\u009b31m", "\u202e", "\u2066", "\u200b", "\r"])
def test_c1_controls_and_bidi_overrides_are_refused_in_free_text(engine, actors, bad):
    before = table_counts(engine)
    with pytest.raises(BadInput) as refused:
        perform(engine, actors["intake1"], "report", category="S0102", lon=116.41, lat=39.92,
                description=f"路边垃圾{bad}已清理")
    assert "control characters" in refused.value.message("en")
    assert table_counts(engine) == before
    with pytest.raises(BadInput):
        save_filter(engine, actors["intake1"], f"fil{bad}ter", {})
    with pytest.raises(BadInput):
        add_user(engine, "ctrl_user", "intake", "secret-1", f"名{bad}字")


def test_newlines_and_tabs_stay_allowed(engine, actors):
    done = perform(engine, actors["intake1"], "report", category="S0102", lon=116.41,
                   lat=39.92, description="第一行\n第二行\t（附表）")
    assert done.status == "reported"
