"""Secrets on their way in (URLs, key files) and out of every message.

In: a database password never comes from the command line, where every user
of the machine reads it (``ps``, ``/proc/PID/cmdline``, shell history):
``--database-url`` with a password is refused, in favour of
``GRID_DATABASE_URL`` or ``--database-url-file PATH``, a file only its owner
may read (``chmod 600``).  The gateway's enrolment key arrives the same ways.

Out: ``redact_url`` shows a URL without its password (the status window,
``db url``, error messages); ``scrub`` takes every secret this process has
seen (``remember``) and every password-shaped thing out of a text, and
``install_log_scrubber`` applies it to each log line and traceback, so a
message that quotes a driver's error or a URL still cannot carry one.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from pathlib import Path
from urllib.parse import unquote

from db.errors import BadInput

MASK = "***"
_URL_PASSWORD = re.compile(r"(//[^/?#@:\s]*:)[^@/?#\s]*@")
_PARAM_PASSWORD = re.compile(r"(\b(?:password|passwd|pwd|key)\s*=\s*)('[^']*'|[^\s&'\"]+)", re.I)
_HASHES = re.compile(
    r"\$argon2(?:id|i|d)\$[^\s'\"]+"  # argon2 password hashes
    r"|sha256i\$\d+\$[0-9a-f]+\$[0-9a-f]+"  # db.passwords' salted, iterated SHA-256
    r"|SCRAM-SHA-256\$[^\s'\"]+"  # PostgreSQL's stored SCRAM verifiers
    r"|\bmd5[0-9a-f]{32}\b"  # PostgreSQL's old md5 verifiers
)
_secrets: set[str] = set()
_lock = threading.Lock()


def remember(secret: str | None) -> None:
    """Mask ``secret`` in every later ``scrub`` (passwords, keys this process holds)."""
    if secret and len(secret) >= 4:  # shorter ones would mask ordinary words
        with _lock:
            _secrets.add(secret)


def scrub(text: str) -> str:
    """``text`` without remembered secrets, URL passwords, ``password=…`` or hashes."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _PARAM_PASSWORD.sub(rf"\1{MASK}", text)
    return _HASHES.sub(MASK, text)


def url_password(url: str) -> str | None:
    """The password a database URL carries (in its credentials or its query), or None."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: look for the shapes themselves
        match = _URL_PASSWORD.search(url) or _PARAM_PASSWORD.search(url)
        return MASK if match else None
    if parsed.password:
        return str(parsed.password)
    query = parsed.query.get("password")
    if isinstance(query, tuple):
        query = query[0] if query else None
    return query or None


def redact_url(url: str) -> str:
    """The URL for people to read: any password shown as ``***``; never raises."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return scrub(url)
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": MASK})
    return unquote(parsed.render_as_string(hide_password=True))


def check_url(url: str, where: str) -> str:
    """``url`` if SQLAlchemy can read it, else ``BadInput`` naming ``where`` it came from."""
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except Exception:  # not quoted: a URL this garbled may hide its password from redaction
        raise BadInput(
            f"{where} 不是有效的数据库 URL（例如 postgresql://user@host/db）。",
            f"{where} is not a database URL (for example postgresql://user@host/db).",
        ) from None
    return url


def read_owner_only(path: str | os.PathLike) -> str:
    """The first line of a secret file, refused unless only its owner may read it.

    Group or other permissions of any kind are refused (``chmod 600 FILE``),
    as ssh does with private keys: a secret another account can read is not
    one.  The text itself never appears in a message.
    """
    p = Path(path)
    try:
        info = p.stat()
    except OSError as exc:
        raise BadInput(
            f"无法读取 {p}：{exc.strerror}", f"Cannot read {p}: {exc.strerror}"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{p} 不是普通文件。", f"{p} is not a regular file.")
    if info.st_mode & 0o077:
        raise BadInput(
            f"{p} 的权限为 {stat.filemode(info.st_mode)}，其他用户可以读取；"
            f"请执行 chmod 600 {p}。",
            f"{p} is {stat.filemode(info.st_mode)}: other users can read it; "
            f"run chmod 600 {p}.",
        )
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise BadInput(f"无法读取 {p}：{reason}", f"Cannot read {p}: {reason}") from None
    value = next((line.strip() for line in lines if line.strip()), "")
    if not value:
        raise BadInput(f"{p} 是空的。", f"{p} is empty.")
    remember(value)
    return value


def database_url(cli_url: str | None, url_file: str | None) -> str | None:
    """The database URL from the command line, a file or ``GRID_DATABASE_URL``; None: embedded.

    A command-line URL with a password is refused (``BadInput``, exit 2):
    give it in the environment or in an owner-only file instead.
    """
    if cli_url and url_file:
        raise BadInput(
            "--database-url 与 --database-url-file 只能给一个。",
            "Give --database-url or --database-url-file, not both.",
        )
    if cli_url:
        if url_password(cli_url) is not None:
            raise BadInput(
                "命令行上的数据库密码对本机所有用户可见，已拒绝：请用环境变量 "
                "GRID_DATABASE_URL 或只有本人可读的文件 --database-url-file。",
                "A database password on the command line is visible to every user of this "
                "machine: refused. Use GRID_DATABASE_URL or --database-url-file "
                "(a file only you can read).",
            )
        return check_url(cli_url, "--database-url")
    if url_file:
        url = read_owner_only(url_file)
        where = f"--database-url-file {url_file}"
    else:
        url = os.environ.get("GRID_DATABASE_URL") or None
        where = "GRID_DATABASE_URL"
    if url is None:
        return None
    remember(url_password(url))
    return check_url(url, where)


class _ScrubbingFormatter(logging.Formatter):
    """Formats as the handler's own formatter did, then scrubs the whole text."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.inner.format(record))


def install_log_scrubber(logger: logging.Logger | None = None) -> None:
    """Scrub every line (tracebacks included) the handlers of ``logger`` (root) write."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, _ScrubbingFormatter):
            handler.setFormatter(_ScrubbingFormatter(handler.formatter))
