"""Concurrent operators: one winner per race, no lost update, a log in commit order."""

from __future__ import annotations

import random
import threading
from collections import Counter

from sqlalchemy import text

from db.case_actions import perform
from db.errors import BadInput, Conflict
from db.feed import ChangeFeed, current_seq, dsn_of
from tests.conftest import wait_for
from tests.flows import ACTOR_OF, PARAMS, case_in, report


def _race(engine, actors, case) -> dict[str, object]:
    """Two dispatchers send the same filed case to different departments at once."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def go(user: str, dept: str) -> None:
        barrier.wait()
        try:
            outcomes[user] = perform(
                engine, actors[user], "dispatch", case.number, case.version, department=dept
            )
        except Conflict as exc:
            outcomes[user] = exc

    threads = [
        threading.Thread(target=go, args=("dispatcher1", "huanwei")),
        threading.Thread(target=go, args=("dispatcher2", "shizheng")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_two_dispatchers_race_exactly_one_wins(engine, actors):
    for _ in range(5):
        case = case_in(engine, actors, "filed")
        outcomes = _race(engine, actors, case)
        winners = [u for u, r in outcomes.items() if not isinstance(r, Exception)]
        losers = [u for u, r in outcomes.items() if isinstance(r, Conflict)]
        assert len(winners) == 1 and len(losers) == 1
        winner_name = actors[winners[0]].display_name
        message = outcomes[losers[0]]
        assert f"已被 {winner_name} 于" in message.zh and "派遣" in message.zh
        assert f"already dispatched by {winner_name} at" in message.en
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    'SELECT count(*) FROM case_log l JOIN "case" c ON c.id = l.case_id '
                    "WHERE c.number = :n AND l.action = 'dispatch'"
                ),
                {"n": case.number},
            ).scalar_one()
            dept = conn.execute(
                text(
                    'SELECT d.code FROM "case" c JOIN department d ON d.id = c.department_id '
                    "WHERE c.number = :n"
                ),
                {"n": case.number},
            ).scalar_one()
        assert n == 1
        assert dept == ("huanwei" if winners[0] == "dispatcher1" else "shizheng")


# The next step for a case in each status, chosen at random among these.
NEXT = {
    "reported": ["accept"],
    "accepted": ["file"],
    "filed": ["dispatch"],
    "dispatched": ["acknowledge", "escalate"],
    "in_progress": ["feedback", "escalate"],
    "awaiting_verification": ["verify_fail", "verify_pass"],
    "closed": ["archive"],
}


def test_eight_connections_thousand_mixed_actions(engine, actors):
    cases = [report(engine, actors).number for _ in range(60)]
    start_seq = current_seq(engine)
    received: list[int] = []
    feed = ChangeFeed(
        dsn_of(engine), lambda es: received.extend(e.seq for e in es), start_seq=start_seq
    ).start()
    attempts = 1000
    per_thread = attempts // 8
    stats = Counter()
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            number = rng.choice(cases)
            with engine.connect() as conn:
                status, version, escalation = conn.execute(
                    text('SELECT status, version, escalation FROM "case" WHERE number = :n'),
                    {"n": number},
                ).one()
            choices = NEXT.get(status)
            if not choices:
                with lock:
                    stats["finished"] += 1
                continue
            action = rng.choice(choices)
            if action == "escalate" and escalation >= 2:
                action = choices[0]
            try:
                perform(
                    engine,
                    actors[ACTOR_OF[action]],
                    action,
                    number,
                    version,
                    **PARAMS.get(action, {}) | ({"level": None} if action == "escalate" else {}),
                )
                key = "ok"
            except Conflict:
                key = "conflict"
            except BadInput:
                key = "bad"  # e.g. already escalated twice by a racing thread
            with lock:
                stats[key] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    with engine.connect() as conn:
        log = conn.execute(
            text("SELECT seq, case_id, case_version FROM case_log WHERE seq > :s ORDER BY seq"),
            {"s": start_seq},
        ).all()
        versions = dict(conn.execute(text('SELECT id, version FROM "case"')).all())
        per_case = dict(
            conn.execute(text("SELECT case_id, count(*) FROM case_log GROUP BY case_id")).all()
        )
    assert stats["ok"] > 300, stats
    assert stats["ok"] + stats["conflict"] + stats["bad"] + stats["finished"] == per_thread * 8
    # No lost update: one log entry per successful action, one version per entry.
    assert len(log) == stats["ok"]
    assert all(per_case[cid] == v for cid, v in versions.items())
    # Sequence strictly increasing, and in commit order: per case, versions rise with seq.
    seqs = [r.seq for r in log]
    assert seqs == sorted(set(seqs))
    last_version: dict[int, int] = {}
    for r in log:
        assert r.case_version == last_version.get(r.case_id, 1) + 1
        last_version[r.case_id] = r.case_version
    # A listener saw every entry exactly once, in order.
    assert wait_for(lambda: len(received) >= len(log), 10)
    feed.stop()
    assert received == seqs
