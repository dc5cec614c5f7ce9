"""The status window fits a workstation's screen whatever the database address is.

A CI checkout put the embedded server's socket deep in a temporary directory; the
address made the status window 889 px wide and the 800×600 screenshot was scaled.
"""

from __future__ import annotations

from widgets.status_view import StatusView

LONG_URL = "postgresql+psycopg2://grid_console@/grid?host=/" + "/".join(["a-deep-directory"] * 20)


def status(url: str) -> dict:
    return {
        "url": url,
        "server": "PostgreSQL 16.4 (Debian 16.4-1.pgdg120+1) on x86_64-pc-linux-gnu, 64-bit",
        "schema": "0008",
        "schema_head": "0008",
        "districts": 1,
        "grids": 2,
        "departments": 3,
        "categories": 4,
        "users": 5,
        "cases": 6,
        "cases_by_status": {},
        "log_seq": 7,
        "audit": None,
    }


def test_a_long_database_address_does_not_widen_the_window(qtbot):
    view = StatusView("zh")
    qtbot.addWidget(view)
    view.show_status(status(LONG_URL))
    view.resize(800, 600)
    view.show()
    qtbot.waitExposed(view)
    assert view.minimumSizeHint().width() < 800
    assert view.width() == 800
    field = view.fields["database"]
    shown = field.displayed()
    # Both ends of the address stay readable, the middle gives way, the whole is a hover away.
    assert shown.startswith("postgresql") and shown.endswith("directory") and "…" in shown
    assert field.fontMetrics().horizontalAdvance(shown) <= field.contentsRect().width()
    assert field.toolTip() == LONG_URL
    assert field.text() == LONG_URL  # copied whole


def test_a_short_address_is_shown_whole(qtbot):
    view = StatusView("en")
    qtbot.addWidget(view)
    view.show_status(status("postgresql+psycopg2://grid@db/grid"))
    view.resize(800, 600)
    view.show()
    qtbot.waitExposed(view)
    assert view.fields["database"].displayed() == "postgresql+psycopg2://grid@db/grid"
