"""Every command line in the README's "## Command line" section works as printed.

The section's code block is read when the tests are collected, so a line
added there later is run too.  Each line becomes one test; the lines run in
the README's order as one session, as a new user would type them, on a demo
of their own: a fresh embedded server in a temporary ``GRID_DATA_DIR`` (the
database the README's lines are written for; ``--database-url`` would make
it a shared server, where ``demo seed`` and ``simulate`` rightly refuse).

How a printed line becomes a command, as a reader would take it:

- a line ending in ``\\`` continues on the next; ``# exit N`` after a line
  documents that it exits N (otherwise 0 is expected);
- ``[optional]`` parts are taken as written where that makes sense; an
  alternative (``gcj02|wgs84``, ``[--street A | --grid B]``) is taken as its
  first choice; an optional part holding a placeholder the test cannot fill
  (``[--streets N]``) or needing a server of its own (``--gateway http://…``)
  is dropped;
- ``VAR=...`` is a password: the user's own, a demo login's from the README's
  login table (``--admin admin`` → ``demo-admin``), anyone else's the one the
  session gave it (:data:`PASSWORD`);
- ``OUT.png``, ``OUT.html`` … are files in a temporary directory,
  ``FILE.geojson`` a small district boundary written here, ``FILE.csv`` two
  cameras, ``photo.jpg`` a real JPEG, ``S`` after ``--duration`` a few seconds, and a case number
  (``20261121-00042``) the number the README's last ``case act - report``
  printed;
- a line that would not end by itself (``gateway``, ``simulate`` without
  ``--duration``, the window) is skipped with the reason, as is any other
  placeholder outside an optional part.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli_runner import ROOT, main_py

README = (ROOT / "README.md").read_text("utf-8")
PASSWORD = "readme-pass-1"  # the password of every user the session itself creates
DURATION_S = "3"  # what ``--duration S`` becomes: long enough to do something, then stop
NUMBER = re.compile(r"^\d{8}-\d{5}$")  # a case number, 日期-序号
PLACEHOLDER = re.compile(r"^[A-Z]+(\.[A-Za-z0-9]+)?$")  # N, S, OUT.png, FILE.geojson (not S0102)
# A small rectangle inside Dongcheng (about 1.0 × 0.67 km): the district ``FILE.geojson`` is.
RECTANGLE = [[116.400, 39.900], [116.412, 39.900], [116.412, 39.906], [116.400, 39.906]]


# --- reading the README -------------------------------------------------------------


def command_block(text: str) -> str:
    """The first ```bash block after the "## Command line" heading."""
    section = text.split("\n## Command line", 1)[1]
    match = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert match, "README: no code block under ## Command line"
    return match.group(1)


def joined_lines(block: str) -> list[str]:
    """Lines joined on trailing backslashes; blank lines and comments dropped."""
    lines, current = [], ""
    for raw in block.splitlines():
        current += raw.strip() if current else raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def split_comment(line: str) -> tuple[str, int]:
    """The command and its documented exit code (``# exit N``, else 0)."""
    match = re.search(r"\s#\s*(.*)$", line)
    if not match:
        return line, 0
    code = re.match(r"exit\s+(\d+)", match.group(1))
    return line[: match.start()].rstrip(), int(code.group(1)) if code else 0


def segments(text: str) -> list[tuple[bool, str]]:
    """``text`` as (optional?, text) pieces; brackets inside quotes are text."""
    out: list[tuple[bool, str]] = []
    depth, quote, buf = 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            if depth == 0:
                out.append((False, buf))
                buf = ""
                depth = 1
                continue
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
            if depth == 0:
                out.append((True, buf))
                buf = ""
                continue
        buf += ch
    assert depth == 0 and quote is None, f"unbalanced [ ] or quotes: {text}"
    out.append((False, buf))
    return [(opt, s) for opt, s in out if s.strip()]


def first_choice(token: str) -> str:
    """``gcj02|wgs84`` → ``gcj02``: an alternative written into one word."""
    return token.split("|")[0] if "|" in token and not token.startswith(("http", "'", '"')) \
        else token


# --- one printed line, made into a command ---------------------------------------------


@dataclass
class Command:
    """What the test runs for one printed line (or why it cannot)."""

    printed: str
    expected: int = 0
    env: dict = field(default_factory=dict)  # VAR=value before the command
    argv: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # optional parts left out, and why
    skip: str | None = None


def needs_placeholder(words: list[str], files: dict[str, str]) -> str | None:
    """The first placeholder in ``words`` the test cannot fill, if any."""
    for i, word in enumerate(words):
        if word in files or NUMBER.match(word):
            continue
        if i and words[i - 1] == "--duration" and word == "S":
            continue
        if PLACEHOLDER.match(word):
            return word
    return None


def make_command(printed: str, files: dict[str, str]) -> Command:
    """Turn a printed line into a command line (see the module docstring)."""
    text, expected = split_comment(printed)
    cmd = Command(printed, expected)
    words: list[str] = []
    for optional, piece in segments(text):
        if not optional:
            if re.search(r"\s\|\s", piece):
                raise AssertionError(f"README line is not one command (a ' | ' in it): {printed}")
            words += shlex.split(piece)
            continue
        choice = re.split(r"\s\|\s", piece)[0]  # [--a X | --b Y] → --a X
        part = [first_choice(w) for w in shlex.split(choice)]
        if any(w.startswith("http://") or w.startswith("https://") for w in part):
            cmd.dropped.append(f"[{piece}]: needs a server of its own")
            continue
        missing = needs_placeholder(part, files)
        if missing:
            cmd.dropped.append(f"[{piece}]: placeholder {missing}")
            continue
        words += part
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, value = words.pop(0).split("=", 1)
        cmd.env[name] = value
    if words[:2] != ["python", "main.py"]:
        cmd.skip = "not a main.py command"
        return cmd
    argv = [first_choice(w) for w in words[2:]]
    missing = needs_placeholder(argv, files)
    if missing:
        cmd.skip = f"placeholder {missing} the test cannot fill"
        return cmd
    cmd.argv = argv
    command = next((w for w in argv if not w.startswith("-")), None)
    if (command is None and "--help" not in argv) or command == "open":
        cmd.skip = "opens the console window, which runs until it is closed"
    elif command == "gateway":
        cmd.skip = "runs the GPS gateway, a server that runs until stopped"
    elif command == "simulate" and "--duration" not in argv:
        cmd.skip = "simulate without --duration runs until Ctrl-C"
    return cmd


LINES = joined_lines(command_block(README))


# --- passwords, as the reader of the README knows them ---------------------------------


def demo_logins() -> dict[str, str]:
    """README's demo login table: login → password."""
    rows = {}
    for line in README.splitlines():
        m = re.match(r"^\| `([a-z_0-9]+)` \| [^|]+ \| `([^`]+)` \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) \
        else None


def password_of(user: str | None) -> str:
    return demo_logins().get(user or "", PASSWORD)


def fill_passwords(cmd: Command) -> dict:
    """``VAR=...`` → the password that variable means for this command."""
    env = {}
    argv = cmd.argv
    positional = [w for w in argv if not w.startswith("-")]
    for var, value in cmd.env.items():
        if value != "...":
            env[var] = value
        elif var == "GRID_ADMIN_PASSWORD":
            env[var] = password_of(option(argv, "--admin"))
        elif positional[:2] == ["users", "add"]:
            env[var] = PASSWORD  # the new user's password
        elif positional[:1] == ["users"] and len(positional) > 2:
            env[var] = password_of(positional[2])  # users passwd NAME: current and new
        else:
            env[var] = password_of(option(argv, "--user"))
    return env


# --- the session ------------------------------------------------------------------------


def write_files(folder: Path) -> dict[str, str]:
    """The files the README's placeholders stand for."""
    from PySide6.QtGui import QColor, QImage

    folder.mkdir(parents=True, exist_ok=True)
    boundary = folder / "FILE.geojson"
    boundary.write_text(json.dumps({"type": "Feature",
                                    "properties": {"adcode": "999001", "name": "说明区"},
                                    "geometry": {"type": "Polygon",
                                                 "coordinates": [RECTANGLE + RECTANGLE[:1]]}}))
    photo = QImage(64, 48, QImage.Format.Format_RGB32)
    photo.fill(QColor("#7a9a5a"))
    assert photo.save(str(folder / "photo.jpg"), "JPEG")
    cameras = folder / "FILE.csv"  # two cameras in Dongcheng, for ``camera import``
    cameras.write_text("code,name,lon,lat,heading,view_angle,groups\n"
                       "CAM201,东单北大街路口,116.4180,39.9150,90,60,东单;重点部位\n"
                       "CAM202,灯市口大街路口,116.4120,39.9180,,,灯市口\n", "utf-8")
    files = {"FILE.geojson": str(boundary), "photo.jpg": str(folder / "photo.jpg"),
             "FILE.csv": str(cameras)}
    for line in LINES:
        for word in re.findall(r"\bOUT\.[A-Za-z0-9]+\b", line):
            files[word] = str(folder / word)
    return files


@dataclass
class Outcome:
    command: Command
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # the line could not be made into a command at all

    def report(self) -> str:
        return (f"README: {self.command.printed}\nran: main.py {shlex.join(self.command.argv)}"
                f"\nexit {self.code}, expected {self.command.expected}"
                f"\nstdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-1500:]}")


class Session:
    """The README's lines, run once each and in order, on one demo of the session's own."""

    def __init__(self, data_dir: Path, files: dict[str, str]):
        self.data_dir = data_dir
        self.files = files
        self.outcomes: dict[int, Outcome] = {}
        self.last_number: str | None = None

    def run_through(self, index: int) -> Outcome:
        for i in range(index + 1):
            if i not in self.outcomes:
                self.outcomes[i] = self._run(LINES[i])
        return self.outcomes[index]

    def _run(self, printed: str) -> Outcome:
        """One line's outcome; a line that cannot run fails its own test, not the next."""
        try:
            cmd = make_command(printed, self.files)
        except AssertionError as exc:
            return Outcome(Command(printed), error=str(exc))
        if cmd.skip:
            return Outcome(cmd)
        argv = []
        for i, word in enumerate(cmd.argv):
            if NUMBER.match(word):
                if not self.last_number:
                    return Outcome(cmd, error=f"no case reported before this line: {printed}")
                word = self.last_number
            elif i and cmd.argv[i - 1] == "--duration" and word == "S":
                word = DURATION_S
            argv.append(self.files.get(word, word))
        env = {**fill_passwords(cmd), "GRID_DATA_DIR": str(self.data_dir),
               "GRID_WORKSTATION": "readme-test"}
        cmd.argv = argv
        run = main_py(*argv, env=env, timeout=600)
        if argv[:3] == ["case", "act", "-"] and run.returncode == 0:
            self.last_number = run.stdout.split()[0]  # "NUMBER\tstatus\tvN"
        return Outcome(cmd, run.returncode, run.stdout, run.stderr)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from db.embedded import EmbeddedServer

    root = tmp_path_factory.mktemp("readme")
    data_dir = root / "grid-data"
    # Held for the session, so each command attaches to a running server instead of
    # starting and stopping one; the commands themselves find it through GRID_DATA_DIR.
    server = EmbeddedServer(data_dir)
    yield Session(data_dir, write_files(root / "files"))
    server.stop()


# --- the tests ----------------------------------------------------------------------------


def short(line: str) -> str:
    return re.sub(r"^(\S+=\S+ )*python main.py ", "", line)[:60]


@pytest.mark.timeout(1800)  # a line run alone runs the lines before it first
@pytest.mark.parametrize("index", range(len(LINES)),
                         ids=[f"{i:02d} {short(line)}" for i, line in enumerate(LINES)])
def test_readme_command_works_as_printed(session, index):
    outcome = session.run_through(index)
    if outcome.error:
        pytest.fail(outcome.error)
    if outcome.command.skip:
        pytest.skip(outcome.command.skip)
    assert "Traceback" not in outcome.stderr, outcome.report()
    assert outcome.code == outcome.command.expected, outcome.report()


def test_the_section_is_there_and_nearly_every_line_runs():
    assert len(LINES) >= 20
    commands = [make_command(line, write_files_stub()) for line in LINES]
    skipped = [c for c in commands if c.skip]
    assert len(skipped) <= 3, [(c.printed, c.skip) for c in skipped]


def write_files_stub() -> dict[str, str]:
    """Placeholder names only (no files): enough to decide what runs."""
    names = {"FILE.geojson", "photo.jpg", "FILE.csv"}
    for line in LINES:
        names.update(re.findall(r"\bOUT\.[A-Za-z0-9]+\b", line))
    return {n: n for n in names}


def test_printed_lines_are_read_as_a_reader_would():
    """The reading rules on made-up lines, so a README edit meets a known parser."""
    files = {"OUT.png": "/tmp/o.png"}
    block = ("# a comment\n"
             "GRID_PASSWORD=... python main.py case act - report --user intake \\\n"
             "    --description \"有[括号]的描述\" [--crs gcj02|wgs84] [--grids N]\n"
             "python main.py export-map OUT.png [--street 1 | --grid 2] [--json]  # exit 2\n"
             "python main.py simulate [--gateway http://127.0.0.1:5055]\n"
             "python main.py gateway [--port 5055]\n")
    lines = joined_lines(block)
    assert len(lines) == 4
    report = make_command(lines[0], files)
    assert report.argv == ["case", "act", "-", "report", "--user", "intake",
                           "--description", "有[括号]的描述", "--crs", "gcj02"]
    assert report.env == {"GRID_PASSWORD": "..."} and "placeholder N" in report.dropped[0]
    assert fill_passwords(report) == {"GRID_PASSWORD": demo_logins()["intake"]}
    export = make_command(lines[1], files)
    assert export.argv == ["export-map", "OUT.png", "--street", "1", "--json"]
    assert export.expected == 2
    assert make_command(lines[2], files).skip.startswith("simulate without --duration")
    assert make_command(lines[3], files).skip.startswith("runs the GPS gateway")
    with pytest.raises(AssertionError, match="not one command"):
        make_command("python main.py db url | db upgrade", files)
