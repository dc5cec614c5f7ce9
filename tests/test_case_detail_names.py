"""The detail and the dispatch dialog name departments as people do, and show the worker.

A new user saw "jiaotong（主办）" and "按类别推荐：jiaotong" where the department's
name belongs, and no sign of the worker a case had been dispatched to.  The
expected names are read from the reference data itself
(resources/reference.json: Chinese names, English ones for ``--lang en``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel
from sqlalchemy import text

from console.config import Settings
from console.i18n import install
from db.case_actions import perform
from db.engine import make_engine
from db.users import get_actor
from tests.flows import case_in
from widgets.app import make_app
from widgets.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "resources" / "reference.json").read_text("utf-8"))
DEPARTMENTS = {d["code"]: d for d in REFERENCE["departments"]}


@pytest.fixture
def window(qtbot, db_url, tmp_path):
    """``window(user, lang)``: a main window on its own engine, closed at the end."""
    make_app()
    opened = []

    def open_window(user: str, lang: str = "zh") -> MainWindow:
        install(lang)
        engine = make_engine(db_url)
        win = MainWindow(engine, get_actor(engine, user, "ws-names"),
                         Settings(database_url=db_url, data_dir=tmp_path, lang=lang),
                         start_feed=False)
        qtbot.addWidget(win)
        win.resize(1400, 900)
        win.show()
        opened.append((win, engine))
        qtbot.waitUntil(lambda: win.store.is_loaded, timeout=10_000)
        return win

    yield open_window
    install("zh")
    for win, engine in opened:
        win.shutdown()
        win.close()
        engine.dispose()


def add_worker(engine, code: str, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO worker (code, name, status) VALUES (:c, :n, 'on_duty')"),
                     {"c": code, "n": name})


def show(qtbot, win: MainWindow, case_id: int) -> dict:
    qtbot.waitUntil(lambda: win.store.get(case_id) is not None, timeout=10_000)
    win.queue.select_case(case_id)
    win.open_case(case_id)
    qtbot.waitUntil(lambda: win.current is not None and win.current["id"] == case_id,
                    timeout=10_000)
    return win.current


@pytest.mark.parametrize("lang, key, lead, co", [
    ("zh", "name", "主办", "协办"),
    ("en", "name_en", "lead", "co-handling"),
])
def test_detail_names_the_departments_and_the_worker(qtbot, window, engine, actors,
                                                      lang, key, lead, co):
    add_worker(engine, "W100", "赵网格")
    case = case_in(engine, actors, "filed")
    perform(engine, actors["dispatcher1"], "dispatch", case.number, case.version,
            department="jiaotong", co_departments=["shizheng"], worker="W100")
    win = window("dispatcher1", lang)
    show(qtbot, win, case.case_id)
    shown = win.detail.fields["department"].text()
    assert shown == (f"{DEPARTMENTS['jiaotong'][key]}（{lead}），"
                     f"{DEPARTMENTS['shizheng'][key]}（{co}）")
    assert "jiaotong" not in shown and "shizheng" not in shown
    assert win.detail.fields["worker"].text() == "赵网格（W100）"


def test_detail_says_no_worker_when_none_was_named(qtbot, window, engine, actors):
    case = case_in(engine, actors, "dispatched")  # the usual path: department only
    win = window("dispatcher1")
    show(qtbot, win, case.case_id)
    assert win.detail.fields["worker"].text() == "—"
    assert win.detail.fields["department"].text() == f"{DEPARTMENTS['huanwei']['name']}（主办）"


@pytest.mark.parametrize("lang, key", [("zh", "name"), ("en", "name_en")])
def test_dispatch_dialog_recommends_the_department_by_name(qtbot, window, engine, actors,
                                                           lang, key):
    # S0102 (暴露垃圾, the flows' report) has 环卫 (huanwei) as its default department.
    default = next(c["department"] for c in REFERENCE["categories"] if c["code"] == "S0102")
    case = case_in(engine, actors, "filed")
    win = window("dispatcher1", lang)
    show(qtbot, win, case.case_id)
    win.start_action("dispatch")
    dialog = win.dialog
    hint = dialog.findChild(QLabel, "recommendation").text()
    assert hint.endswith(f"：{DEPARTMENTS[default][key]}") and default not in hint
    combo = dialog.widgets["department"]
    assert combo.currentData() == default
    assert combo.currentText() == DEPARTMENTS[default][key]
    assert {combo.itemText(i) for i in range(combo.count())} == {
        d[key] for d in REFERENCE["departments"]}
    dialog.reject()
