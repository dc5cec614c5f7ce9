"""Device keys: what a GPS terminal proves itself with, kept only as a SHA-256 hash.

A key is a random token (``secrets.token_urlsafe``, 192 bits) that the
terminal's URL template carries (``…/?id=DEVICE&key=KEY``).  Only its SHA-256
hex digest is stored (``device.key_hash``): the token has far too much entropy
for a fast hash to be guessed back, so a slow password hash would only cost
the gateway time on every report.  The new key is shown once, to whoever set
it; nothing can show it again, only replace it.

Who may set a key is the database's decision: with ``by`` (an administrator's
session) the transaction proves that user (``db.session.bind``, action
``device_key``) and the database's grants and checks allow it or not; without
``by`` the engine's own credentials act, which must be the owner's.  A refusal
is ``Forbidden``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from db.errors import BadInput, NotFound
from db.positions import MAX_IDENTIFIER
from db.session import bind, transaction

if TYPE_CHECKING:
    from db.users import Actor

KEY_BYTES = 24


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256 of its UTF-8 bytes, as 64 hex digits."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_matches(key: str | None, key_hash: str | None) -> bool:
    """Whether ``key`` is the one ``key_hash`` was made from, in constant time."""
    if key is None or key_hash is None:
        return False
    return hmac.compare_digest(hash_key(key), key_hash)


def new_key() -> str:
    """A fresh key: URL-safe characters only, so it goes into a URL template unescaped."""
    return secrets.token_urlsafe(KEY_BYTES)


def set_device_key(
    engine: Engine, identifier: str, create: bool = False, by: Actor | None = None
) -> str:
    """Give ``identifier`` a new key (replacing any old one) and return it, once.

    With ``create`` a device not yet registered is added (unassigned) first.
    Raises ``NotFound`` for an unknown device otherwise.  A running gateway
    takes the new key within seconds (a refused report makes it read the
    device again) and stops taking the old one when it next reads the device
    list (within a minute).
    """
    identifier = _identifier(identifier)
    key = new_key()
    with transaction(engine) as conn:
        if by is not None:
            bind(conn, by, "device_key")
        # The database checks who asks (an administrator's session or the owner).
        updated = conn.execute(
            text("SELECT grid_device_key(:i, :h, :c)"),
            {"h": hash_key(key), "i": identifier, "c": create},
        ).scalar_one()
    if not updated:
        raise _unknown(identifier)
    return key


def clear_device_key(engine: Engine, identifier: str, by: Actor | None = None) -> None:
    """Remove a device's key: it reports without one again (unless keys are required)."""
    identifier = _identifier(identifier)
    with transaction(engine) as conn:
        if by is not None:
            bind(conn, by, "device_key")
        updated = conn.execute(
            text("SELECT grid_device_key(:i, NULL, false)"), {"i": identifier}
        ).scalar_one()
    if not updated:
        raise _unknown(identifier)


def _identifier(identifier: str) -> str:
    if not identifier or len(identifier) > MAX_IDENTIFIER or not identifier.isprintable():
        raise BadInput(
            f"设备标识须为 1–{MAX_IDENTIFIER} 个可打印字符。",
            f"A device id is 1–{MAX_IDENTIFIER} printable characters.",
        )
    return identifier


def _unknown(identifier: str) -> NotFound:
    return NotFound(
        f"未登记的设备“{identifier}”（加 --create 登记）。",
        f"Unknown device '{identifier}' (add --create to register it).",
    )
