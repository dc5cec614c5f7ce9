"""Bad input gets a clear message and changes no row."""

from __future__ import annotations

import ast
import math
import re
import struct
import zlib
from pathlib import Path

import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.errors import BadInput, Forbidden, GridError, NotFound
from tests.conftest import table_counts
from tests.flows import REPORT, case_in, report, step


def png_bytes(size: int = 0) -> bytes:
    """A valid 1×1 PNG, padded with a private chunk to about ``size`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    pad = chunk(b"prVt", b"\x00" * max(0, size - 60)) if size else b""
    return b"\x89PNG\r\n\x1a\n" + body + pad + chunk(b"IEND", b"")


BAD_REPORTS = [
    ({"category": "NOPE99"}, "未知问题类别", "Unknown category"),
    ({"category": "S01"}, "大类", "sub-categories"),
    ({"category": 'S0102\'; DROP TABLE "case"; --'}, "未知问题类别", "Unknown category"),
    ({"lon": 200.0}, "超出范围", "out of range"),
    ({"lat": 91}, "超出范围", "out of range"),
    ({"lat": math.nan}, "无效", "finite"),
    ({"lon": "东经116"}, "数字", "numbers"),
    ({"description": "x" * 1_000_000}, "过长", "too long"),
    ({"description": "   "}, "请填写", "required"),
    ({"description": "bad\x00nul"}, "控制字符", "control characters"),
    ({"address": "a" * 201}, "过长", "too long"),
    ({"severity": "apocalyptic"}, "紧急程度", "severity"),
    ({"source": "rumour"}, "来源", "source"),
    ({"attachments": [("big.png", png_bytes(11 * 1024 * 1024))]}, "过大", "too large"),
    (
        {"attachments": [("evil.png", b"MZ\x90\x00 not an image")]},
        "不是支持的图片",
        "not a supported image",
    ),
    ({"attachments": [("empty.png", b"")]}, "为空", "empty"),
]


@pytest.mark.parametrize(
    ("override", "zh", "en"),
    BAD_REPORTS,
    ids=[f"{next(iter(o))}-{i}" for i, (o, *_) in enumerate(BAD_REPORTS)],
)
def test_bad_report_is_refused_and_changes_nothing(engine, actors, override, zh, en):
    report(engine, actors)  # something to leave untouched
    before = table_counts(engine)
    with pytest.raises(BadInput) as err:
        perform(engine, actors["intake1"], "report", **{**REPORT, **override})
    assert zh in err.value.zh
    assert en in err.value.en
    assert table_counts(engine) == before


def test_sql_metacharacters_in_text_are_stored_verbatim(engine, actors):
    """Quotes are ordinary characters in an address; they must not be refused or run."""
    nasty = 'O\'Brien 胡同 "5号"; DROP TABLE "case"; -- 50% off_'
    case = report(engine, actors, description=nasty, address="'; DELETE FROM case_log; --")
    with engine.connect() as conn:
        stored = conn.execute(
            text('SELECT description, address FROM "case" WHERE number = :n'), {"n": case.number}
        ).one()
        logs = conn.execute(text("SELECT count(*) FROM case_log")).scalar_one()
    assert stored.description == nasty
    assert stored.address == "'; DELETE FROM case_log; --"
    assert logs >= 1


def test_unknown_case_number_with_metacharacters(engine, actors):
    before = table_counts(engine)
    with pytest.raises(NotFound) as err:
        perform(engine, actors["intake1"], "accept", "1' OR '1'='1", 1)
    assert "不存在" in err.value.zh
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("action", "params", "zh"),
    [
        ("reject", {"reason": ""}, "请填写原因"),
        ("reject", {"reason": "r" * 5000}, "过长"),
        ("merge", {"into": ""}, "合并到"),
        ("merge", {"into": "20000101-99999"}, "不存在"),
        ("file", {"category": "ZZZ"}, "未知问题类别"),
    ],
)
def test_bad_action_parameters(engine, actors, action, params, zh):
    case = case_in(engine, actors, "accepted")
    before = table_counts(engine)
    with pytest.raises(BadInput) as err:
        perform(engine, actors["intake1"], action, case.number, case.version, **params)
    assert zh in err.value.zh
    assert table_counts(engine) == before


def test_bad_dispatch_and_feedback_parameters(engine, actors):
    filed = case_in(engine, actors, "filed")
    before = table_counts(engine)
    with pytest.raises(BadInput, match="未知处置单位"):
        perform(
            engine,
            actors["dispatcher1"],
            "dispatch",
            filed.number,
            filed.version,
            department="nobody",
        )
    with pytest.raises(BadInput, match="未知网格员"):
        perform(
            engine, actors["dispatcher1"], "dispatch", filed.number, filed.version, worker="ghost"
        )
    assert table_counts(engine) == before
    working = case_in(engine, actors, "in_progress")
    before = table_counts(engine)
    with pytest.raises(BadInput, match="处置说明或照片"):
        perform(engine, actors["dept_huanwei"], "feedback", working.number, working.version)
    with pytest.raises(BadInput, match="过大"):
        perform(
            engine,
            actors["dept_huanwei"],
            "feedback",
            working.number,
            working.version,
            evidence="done",
            attachments=[("p.png", png_bytes(11 * 1024 * 1024))],
        )
    for hours in (0, -5, "soon", 10_000, math.inf):
        with pytest.raises(BadInput):
            perform(
                engine,
                actors["dept_huanwei"],
                "request_extension",
                working.number,
                working.version,
                hours=hours,
                reason="需要时间",
            )
    assert table_counts(engine) == before


def test_wrong_role_and_missing_version(engine, actors):
    case = case_in(engine, actors, "filed")
    before = table_counts(engine)
    with pytest.raises(Forbidden):
        perform(engine, actors["wall1"], "dispatch", case.number, case.version)
    with pytest.raises(BadInput, match="版本号"):
        perform(engine, actors["dispatcher1"], "dispatch", case.number, None)
    with pytest.raises(BadInput, match="未知操作"):
        perform(engine, actors["dispatcher1"], "explode", case.number, case.version)
    assert table_counts(engine) == before


def test_good_attachment_is_stored_with_type_and_size(engine, actors):
    image = png_bytes(2048)
    case = report(engine, actors, attachments=[("现场.png", image)])
    case = step(engine, actors, case, "accept")
    with engine.connect() as conn:
        row = conn.execute(
            text(
                'SELECT filename, mime, size, data FROM attachment a JOIN "case" c '
                "ON c.id = a.case_id WHERE c.number = :n"
            ),
            {"n": case.number},
        ).one()
    assert (row.filename, row.mime, row.size) == ("现场.png", "image/png", len(image))
    assert bytes(row.data) == image


# --- every raise site speaks both languages -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u2e80-\u9fff\u3000-\u303f\uf900-\ufaff\uff00-\uffef]")
# maps/ may not import db/ (the house), so its one bilingual error is its own class;
# territory re-raises it as BadInput(exc.zh, exc.en).
OTHER_BILINGUAL = {"BoundaryError"}


def _bilingual_classes(trees: dict[Path, ast.Module]) -> set[str]:
    """GridError and every class below it defined in the tree (found, not listed)."""
    names = {"GridError"}
    while True:
        more = {
            node.name
            for tree in trees.values()
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and any(isinstance(b, ast.Name) and b.id in names for b in node.bases)
        } - names
        if not more:
            return names
        names |= more


def _called(node: ast.Call) -> str | None:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _home(name: str, tree: ast.Module, trees: dict[Path, ast.Module]) -> ast.Module:
    """The module that defines ``name``: this one, or the one it is imported from."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if any((a.asname or a.name) == name for a in node.names):
                path = ROOT.joinpath(*node.module.split(".")).with_suffix(".py")
                return trees.get(path, tree)
    return tree


def _pairs(
    node: ast.Call, tree: ast.Module, trees: dict[Path, ast.Module]
) -> list[tuple[ast.expr, ast.expr]] | str:
    """The (zh, en) expressions a raise site passes, or why they cannot be read."""
    args = list(node.args) + [k.value for k in node.keywords if k.arg in ("zh", "en")]
    if len(args) == 2 and not any(isinstance(a, ast.Starred) for a in args):
        return [(args[0], args[1])]
    if len(args) == 1 and isinstance(args[0], ast.Starred):
        inner = args[0].value
        if isinstance(inner, ast.Name):  # *MESSAGE: a module-level (zh, en) tuple
            values = [
                n.value
                for n in _home(inner.id, tree, trees).body
                if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == inner.id for t in n.targets)
            ]
        elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name):
            # *_message(...): every tuple the module-level function returns.
            values = [
                r.value
                for f in _home(inner.func.id, tree, trees).body
                if isinstance(f, ast.FunctionDef) and f.name == inner.func.id
                for r in ast.walk(f)
                if isinstance(r, ast.Return)
            ]
        else:
            values = []
        if values and all(isinstance(v, ast.Tuple) and len(v.elts) == 2 for v in values):
            return [(v.elts[0], v.elts[1]) for v in values]
        return f"cannot resolve {ast.unparse(inner)}"
    return "no English text" if len(args) < 2 else "unexpected arguments"


def _text(node: ast.expr) -> str | None:
    """The literal text of a message, each interpolation shown as {}; None if not literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{}" for v in node.values
        )
    return None


def _chinese_lookups(node: ast.expr) -> list[str]:
    """Label lookups inside an English f-string that do not ask for English."""
    bad = []
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and _called(call) in ("label", "action_label"):
            langs = [a for a in call.args[1:] if isinstance(a, ast.Constant)]
            langs += [k.value for k in call.keywords if k.arg == "lang"]
            if not any(isinstance(a, ast.Constant) and a.value == "en" for a in langs):
                bad.append(ast.unparse(call))
    return bad


def test_every_raise_site_has_an_english_text():
    """Every GridError (and subclass) raised in db/ and console/ says it in English too.

    The English text is the one ``--lang en`` shows: it must be there (GridError
    falls back to the Chinese otherwise), be English (no CJK characters, no
    label looked up in Chinese), and not be the Chinese text again.
    """
    sources = [*(ROOT / "db").rglob("*.py"), *(ROOT / "console").rglob("*.py")]
    sources += [*(ROOT / "maps").rglob("*.py")]
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sources}
    classes = _bilingual_classes(trees) | OTHER_BILINGUAL
    assert {"BadInput", "NotFound", "Conflict", "Forbidden", "Unavailable"} <= classes
    problems: list[str] = []
    sites = 0
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _called(node) in classes):
                continue
            if isinstance(node.func, ast.Name) and node.func.id == "GridError" and not node.args:
                continue
            sites += 1
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            pairs = _pairs(node, tree, trees)
            if isinstance(pairs, str):
                problems.append(f"{where}: {pairs}")
                continue
            for zh_node, en_node in pairs:
                zh_src, en_src = ast.unparse(zh_node), ast.unparse(en_node)
                if (
                    isinstance(en_node, ast.Attribute)
                    and en_node.attr == "en"
                    and zh_src == f"{ast.unparse(en_node.value)}.zh"
                ):
                    continue  # passes on another bilingual error's texts, checked at its site
                zh, en = _text(zh_node), _text(en_node)
                if zh is None or en is None:
                    problems.append(f"{where}: not a literal text: {zh_src} / {en_src}")
                    continue
                if not re.search(r"[A-Za-z]{2}", en):
                    problems.append(f"{where}: no English words: {en!r}")
                if CJK.search(en):
                    problems.append(f"{where}: Chinese in the English text: {en!r}")
                if not CJK.search(zh):
                    problems.append(f"{where}: the Chinese text is not Chinese: {zh!r}")
                if en.strip() == zh.strip():
                    problems.append(f"{where}: the English text repeats the Chinese")
                lookups = _chinese_lookups(en_node)
                problems += [f"{where}: looked up in Chinese: {c}" for c in lookups]
    assert sites > 100  # the walk found the raise sites (there are about 140)
    assert not problems, "\n".join(problems)


def test_an_error_without_english_would_show_chinese_in_english():
    """Why the walk above is needed: GridError falls back to the Chinese text."""
    assert GridError("只有中文").message("en") == "只有中文"
    assert BadInput("中文", "English").message("en") == "English"
