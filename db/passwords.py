"""Password hashes the database itself can check: salted, iterated SHA-256.

The database is the authority on logins (``grid_login`` in revision 0005), so the
hash must be one PostgreSQL 16 can compute without extensions: it has ``sha256()``
but no pgcrypto, no argon2, no bcrypt.  The format is
``sha256i$ROUNDS$SALT_HEX$DIGEST_HEX`` with digest = h_ROUNDS where
h_0 = SHA-256(salt ‖ password) and h_i = SHA-256(h_{i-1} ‖ salt ‖ password).
100,000 rounds cost about 60 ms in plpgsql and in Python alike; what it lacks
against argon2 is memory hardness (the closing note of issue 9 says so).
Python computes the same hash only where the owner bulk-loads users (the demo).
"""

from __future__ import annotations

import hashlib
import hmac
import os

ROUNDS = 100_000
PREFIX = "sha256i"


def digest(password: str, salt: bytes, rounds: int = ROUNDS) -> bytes:
    p = password.encode("utf-8")
    h = hashlib.sha256(salt + p).digest()
    tail = salt + p
    for _ in range(rounds):
        h = hashlib.sha256(h + tail).digest()
    return h


def hash_password(password: str, rounds: int = ROUNDS) -> str:
    """A new hash with a salt of its own (16 random bytes)."""
    salt = os.urandom(16)
    return f"{PREFIX}${rounds}${salt.hex()}${digest(password, salt, rounds).hex()}"


def password_ok(password: str, stored: str | None) -> bool:
    """The check ``grid_password_ok`` makes in the database, for tests and tools."""
    parts = (stored or "").split("$")
    if len(parts) != 4 or parts[0] != PREFIX:
        return False
    return hmac.compare_digest(
        digest(password, bytes.fromhex(parts[2]), int(parts[1])).hex(), parts[3]
    )
