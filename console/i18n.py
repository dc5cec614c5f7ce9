"""Translation through Qt's own mechanism, with the tables kept as JSON.

Source strings are Chinese (the hall's language, and the default); English
comes from ``resources/i18n/en.json`` through a QTranslator, so every string
shown goes through ``QCoreApplication.translate`` like any Qt application's
and a missing entry falls back to the Chinese source rather than to nothing.
A test checks that every ``tr("…")`` in the code has its English entry.
"""

from __future__ import annotations

import json
from importlib import resources

from PySide6.QtCore import QCoreApplication, QTranslator

CONTEXT = "grid"
_installed: list[QTranslator] = []


class JsonTranslator(QTranslator):
    """A QTranslator answering from a {source: translation} table."""

    def __init__(self, table: dict[str, str]):
        super().__init__()
        self.table = table

    def translate(self, context, source_text, disambiguation=None, n=-1):
        return self.table.get(source_text)  # None: not here, Qt falls back to the source

    def isEmpty(self) -> bool:
        return not self.table


def table(lang: str) -> dict[str, str]:
    if lang == "zh":
        return {}
    path = resources.files("resources").joinpath(f"i18n/{lang}.json")
    return json.loads(path.read_text("utf-8"))


def install(lang: str) -> None:
    """Switch the running application to ``lang`` ('zh' or 'en')."""
    app = QCoreApplication.instance()
    for old in _installed:
        app.removeTranslator(old)
    _installed.clear()
    if lang != "zh":
        translator = JsonTranslator(table(lang))
        app.installTranslator(translator)
        _installed.append(translator)


def tr(text: str) -> str:
    """The text in the application's language (source strings are Chinese)."""
    return QCoreApplication.translate(CONTEXT, text)
