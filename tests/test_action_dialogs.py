"""The action dialogs other than dispatch: what each refuses before sending anything.

README: "one dialog per action, checked before sending".  Each dialog is
opened from a real console window on a real case, filled in wrongly and
confirmed: it must say what is wrong, stay open and emit nothing, and the
database must not change.  Then the same dialog, filled in properly, goes
through, so a refusal is the dialog's own and not a dead button.

What the dialogs must refuse comes from the README's role tables and
DOMAIN's lifecycle (a reason to reject, return, fail a verification, close
by decision or reassign; the evidence of a feedback; a description and a
position of a report; the case to merge into; nothing above 挂牌督办) and
the limits of ``db.validation`` (text longer than the service accepts).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtWidgets import QDialogButtonBox
from sqlalchemy import text

from console.config import Settings
from db.engine import make_engine
from db.users import get_actor
from db.validation import MAX_REASON
from db.workflow import OPEN_STATUSES
from tests.conftest import table_counts
from tests.flows import case_in, report, step
from widgets.app import make_app
from widgets.main_window import MainWindow

TOO_LONG = "长" * (MAX_REASON + 1)
OVER = f"（{MAX_REASON + 1}/{MAX_REASON}）"


@pytest.fixture
def window(qtbot, db_url, tmp_path):
    """A console window for ``user`` on its own engine, with its live feed."""
    make_app()
    opened = []

    def open_window(user: str) -> MainWindow:
        engine = make_engine(db_url)
        actor = get_actor(engine, user, f"ws-{user}")
        win = MainWindow(engine, actor, Settings(database_url=db_url, data_dir=tmp_path))
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        opened.append((win, engine))
        qtbot.waitUntil(lambda: win.store.is_loaded and win.live.feed.online, timeout=10_000)
        return win

    yield open_window
    for win, engine in opened:
        win.shutdown()
        win.close()
        engine.dispose()


def version_of(engine, case_id: int) -> tuple[str, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text('SELECT status, version FROM "case" WHERE id = :i'), {"i": case_id}
        ).one()
    return row.status, row.version


def select(qtbot, win: MainWindow, engine, case_id: int) -> None:
    """Open the case in the window, at the version the database has."""
    status, version = version_of(engine, case_id)
    if status in OPEN_STATUSES:  # closed cases are not in the queue, only in the detail
        qtbot.waitUntil(lambda: win.store.get(case_id) is not None, timeout=10_000)
        win.queue.select_case(case_id)
    win.open_case(case_id)
    qtbot.waitUntil(
        lambda: (
            win.current is not None
            and win.current["id"] == case_id
            and win.current["version"] == version
        ),
        timeout=10_000,
    )


def ok(dialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def set_text(dialog, key: str, value: str) -> None:
    widget = dialog.widgets[key]
    if hasattr(widget, "setPlainText"):
        widget.setPlainText(value)
    else:
        widget.setText(value)


def refused(win: MainWindow, engine, action: str, fill: Callable[[object], None], *messages: str):
    """Open ``action``'s dialog, fill it in wrongly, confirm: it refuses, sends nothing."""
    before = table_counts(engine)
    win.start_action(action)
    dialog = win.dialog
    assert dialog.action == action and dialog.isVisible()
    sent: list[dict] = []
    dialog.submitted.connect(sent.append)
    fill(dialog)
    ok(dialog)
    shown = dialog.error.text()
    for message in messages:
        assert message in shown, (action, shown)
    assert sent == [], f"{action}: the dialog sent {sent}"
    assert dialog.isVisible() and dialog.buttons.isEnabled()
    assert table_counts(engine) == before
    return dialog


def goes_through(qtbot, dialog, engine, case_id: int | None, fill, status: str | None) -> None:
    """The same dialog, filled in properly, is sent and the case moves on."""
    fill(dialog)
    ok(dialog)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10_000)
    if case_id is not None and status is not None:
        assert version_of(engine, case_id)[0] == status


def test_intake_dialogs_refuse_missing_and_overlong_text(qtbot, window, engine, actors):
    to_accept = report(engine, actors, description="待受理")
    to_reject = report(engine, actors, description="待不予立案")
    dup, original = report(engine, actors), report(engine, actors, description="原案件")
    closed = case_in(engine, actors, "closed")
    win = window("intake1")

    # accept: the note is optional, but not longer than the service takes.
    select(qtbot, win, engine, to_accept.case_id)
    d = refused(win, engine, "accept", lambda d: set_text(d, "note", TOO_LONG), f"备注过长{OVER}")
    goes_through(qtbot, d, engine, to_accept.case_id, lambda d: set_text(d, "note", ""), "accepted")

    # file: the same for the filing opinion.
    select(qtbot, win, engine, to_accept.case_id)
    d = refused(win, engine, "file", lambda d: set_text(d, "note", TOO_LONG), f"立案意见过长{OVER}")
    goes_through(
        qtbot, d, engine, to_accept.case_id, lambda d: set_text(d, "note", "同意立案"), "filed"
    )

    # reject: a reason is required; blanks are not a reason.
    select(qtbot, win, engine, to_reject.case_id)
    d = refused(win, engine, "reject", lambda d: None, "请填写原因")
    d = refused_again(d, engine, lambda d: set_text(d, "reason", "   \n "), "请填写原因")
    d = refused_again(d, engine, lambda d: set_text(d, "reason", TOO_LONG), f"原因过长{OVER}")
    goes_through(
        qtbot,
        d,
        engine,
        to_reject.case_id,
        lambda d: set_text(d, "reason", "不属于城市管理范围"),
        "rejected",
    )

    # merge: the case to merge into is required.
    select(qtbot, win, engine, dup.case_id)
    d = refused(
        win, engine, "merge", lambda d: set_text(d, "into", "  "), "请填写要合并到的案件编号。"
    )
    goes_through(
        qtbot, d, engine, dup.case_id, lambda d: set_text(d, "into", original.number), "merged"
    )

    # archive: the note has the same limit.
    select(qtbot, win, engine, closed.case_id)
    d = refused(win, engine, "archive", lambda d: set_text(d, "note", TOO_LONG), f"备注过长{OVER}")
    goes_through(qtbot, d, engine, closed.case_id, lambda d: set_text(d, "note", ""), "archived")


def refused_again(dialog, engine, fill, *messages: str):
    """Fill the open dialog in wrongly once more and confirm: refused again, nothing sent."""
    before = table_counts(engine)
    sent: list[dict] = []
    dialog.submitted.connect(sent.append)
    fill(dialog)
    ok(dialog)
    for message in messages:
        assert message in dialog.error.text(), dialog.error.text()
    assert sent == [] and dialog.isVisible() and dialog.buttons.isEnabled()
    assert table_counts(engine) == before
    dialog.submitted.disconnect(sent.append)
    return dialog


def test_report_dialog_needs_a_description_and_a_numeric_position(qtbot, window, engine):
    win = window("intake1")

    def wrong(d):
        set_text(d, "lon", "东经116度")
        set_text(d, "lat", "")
        set_text(d, "description", "")

    d = refused(win, engine, "report", wrong, "请填写问题描述", "经纬度必须是数字。")
    d = refused_again(
        d,
        engine,
        lambda d: (
            set_text(d, "lon", "116.41"),
            set_text(d, "lat", "39.92"),
            set_text(d, "description", "长" * 2001),
        ),
        "问题描述过长（2001/2000）",
    )
    cases_before = table_counts(engine)["case"]
    goes_through(qtbot, d, engine, None, lambda d: set_text(d, "description", "路边暴露垃圾"), None)
    assert table_counts(engine)["case"] == cases_before + 1


def test_department_dialogs(qtbot, window, engine, actors):
    case = case_in(engine, actors, "dispatched")  # dispatched to 环卫 (huanwei)
    win = window("dept_huanwei")
    select(qtbot, win, engine, case.case_id)

    # return: a reason is required (DOMAIN: "returns wrongly routed cases with a reason").
    d = refused(win, engine, "return", lambda d: None, "请填写原因")
    d.reject()
    # request_extension: a reason is required.
    d = refused(win, engine, "request_extension", lambda d: None, "请填写延期原因")
    d.reject()
    # acknowledge: the note's limit.
    d = refused(
        win, engine, "acknowledge", lambda d: set_text(d, "note", TOO_LONG), f"备注过长{OVER}"
    )
    goes_through(
        qtbot, d, engine, case.case_id, lambda d: set_text(d, "note", "已签收"), "in_progress"
    )
    # feedback: evidence is required (DOMAIN: "feeds back with evidence").
    select(qtbot, win, engine, case.case_id)
    d = refused(win, engine, "feedback", lambda d: set_text(d, "evidence", " "), "请填写处置说明")
    goes_through(
        qtbot,
        d,
        engine,
        case.case_id,
        lambda d: set_text(d, "evidence", "已清理完毕"),
        "awaiting_verification",
    )


def test_verifier_dialogs(qtbot, window, engine, actors):
    failing = case_in(engine, actors, "awaiting_verification")
    passing = case_in(engine, actors, "awaiting_verification")
    win = window("verifier1")
    # verify_fail: a reason is required (rework needs to say what is wrong).
    select(qtbot, win, engine, failing.case_id)
    d = refused(win, engine, "verify_fail", lambda d: None, "请填写原因")
    goes_through(
        qtbot, d, engine, failing.case_id, lambda d: set_text(d, "reason", "仍有垃圾"), "dispatched"
    )
    # verify_pass: the note's limit.
    select(qtbot, win, engine, passing.case_id)
    d = refused(
        win, engine, "verify_pass", lambda d: set_text(d, "note", TOO_LONG), f"备注过长{OVER}"
    )
    goes_through(qtbot, d, engine, passing.case_id, lambda d: set_text(d, "note", ""), "closed")


def test_leader_dialogs(qtbot, window, engine, actors):
    to_close = case_in(engine, actors, "filed")
    red = case_in(engine, actors, "filed")
    red = step(engine, actors, red, "escalate", level=1)
    red = step(engine, actors, red, "escalate", level=2)  # 挂牌督办: the highest level
    asking = case_in(engine, actors, "in_progress")
    step(engine, actors, asking, "request_extension")
    win = window("leader1")

    # close: "close (by decision, with a reason)".
    select(qtbot, win, engine, to_close.case_id)
    d = refused(win, engine, "close", lambda d: None, "请填写原因")
    goes_through(
        qtbot, d, engine, to_close.case_id, lambda d: set_text(d, "reason", "领导决定"), "closed"
    )
    # escalate: nothing above 挂牌督办.
    select(qtbot, win, engine, red.case_id)
    d = refused(win, engine, "escalate", lambda d: None, "已是最高督办级别。")
    assert d.widgets["level"].count() == 0
    d.reject()
    # approve_extension: the explanation's limit.
    select(qtbot, win, engine, asking.case_id)
    d = refused(
        win,
        engine,
        "approve_extension",
        lambda d: set_text(d, "reason", TOO_LONG),
        f"审批说明过长{OVER}",
    )
    _, v = version_of(engine, asking.case_id)
    goes_through(
        qtbot, d, engine, asking.case_id, lambda d: set_text(d, "reason", "同意"), "in_progress"
    )
    assert version_of(engine, asking.case_id)[1] == v + 1


def test_reassign_dialog_needs_a_reason(qtbot, window, engine, actors):
    case = case_in(engine, actors, "dispatched")
    win = window("dispatcher1")
    select(qtbot, win, engine, case.case_id)
    d = refused(win, engine, "reassign", lambda d: None, "请填写改派原因")
    _, v = version_of(engine, case.case_id)
    goes_through(
        qtbot,
        d,
        engine,
        case.case_id,
        lambda d: set_text(d, "reason", "改由二队处理"),
        "dispatched",
    )
    assert version_of(engine, case.case_id)[1] == v + 1
