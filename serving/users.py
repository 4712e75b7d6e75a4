"""Users of the retention workspace: API keys with a role, stored as salted scrypt hashes, and the audit log.

* ``churn users add NAME --role viewer|marketer|admin`` creates a key ``ck_<id>_<secret>`` and prints it once;
  only ``scrypt(secret, salt, n=2**14, r=8, p=1)`` (memory-hard, from the standard library's OpenSSL binding) is
  stored, in ``<outputs>/workspace.db`` (SQLite), with the name, role and dates. ``revoke`` disables a key at once.
* Roles are ordered: ``viewer`` (lists and profiles without contact fields) < ``marketer`` (plus contact fields,
  when ``outputs.include_contact`` published them, and exports) < ``admin`` (plus user management).
* The audit log (same database) records who did what and when: every profile view and every export. It holds no
  personal data: a customer appears as ``HMAC-SHA256(secret, customer_id)`` (the secret lives in the database),
  so "who opened customer X" can be answered by hashing X, and the log says nothing once X is forgotten.
* Checking a key costs one scrypt; a verified key is remembered (by its SHA-256) for ``CACHE_SECONDS`` so that an
  API client does not pay it per request; a revoked key is refused at once (the revocation is read every time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common.errors import ChurnError

ROLES = ("viewer", "marketer", "admin")
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}
CACHE_SECONDS = 60.0
DATABASE = "workspace.db"


class UserError(ChurnError):
    """A user command that cannot be done (unknown user, bad role)."""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str

    def can(self, role: str) -> bool:
        """True when this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)


class UserStore:
    """The users, the audit log and the app's signing secret, in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._verified: dict[str, tuple[float, str]] = {}  # sha256(key) -> (until, user id)
        self._lock = threading.Lock()
        self._local = threading.local()  # one connection per thread: a key check costs one indexed read
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                       "role TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL, created TEXT NOT NULL, "
                       "revoked TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS audit (at TEXT NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL, "
                       "target TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS secret (value BLOB NOT NULL)")
            if db.execute("SELECT count(*) FROM secret").fetchone()[0] == 0:
                db.execute("INSERT INTO secret VALUES (?)", (secrets.token_bytes(32),))

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: an audit line is durable at the next checkpoint
        return db

    @property
    def secret(self) -> bytes:
        if not hasattr(self, "_secret"):
            with self._connect() as db:
                self._secret = db.execute("SELECT value FROM secret").fetchone()[0]
        return self._secret

    def add(self, name: str, role: str) -> str:
        """Create a user; returns the key (shown once, never stored)."""
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not name or len(name) > 64:
            raise UserError("give a user name of 1 to 64 characters")
        user_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        with self._connect() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise UserError(f"a user named {name!r} exists; revoke it first or choose another name")
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, NULL)",
                       (user_id, name, role, salt, _hash(secret, salt), dt.datetime.now(dt.UTC).isoformat()))
        return f"ck_{user_id}_{secret}"

    def list(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT id, name, role, created, revoked FROM users ORDER BY created").fetchall()
        return [dict(zip(("id", "name", "role", "created", "revoked"), r)) for r in rows]

    def revoke(self, name: str) -> None:
        with self._connect() as db:
            done = db.execute("UPDATE users SET revoked = ? WHERE name = ? AND revoked IS NULL",
                              (dt.datetime.now(dt.UTC).isoformat(), name)).rowcount
        if not done:
            raise UserError(f"no active user named {name!r}; `churn users list` shows them")

    def user(self, user_id: str) -> User | None:
        """The active user with this id (a signed session, a verified key), or None."""
        with self._connect() as db:
            row = db.execute("SELECT id, name, role FROM users WHERE id = ? AND revoked IS NULL",
                             (user_id,)).fetchone()
        return User(*row) if row else None

    def verify(self, key: str | None) -> User | None:
        """The active user whose key this is, or None."""
        if not key or not key.startswith("ck_") or key.count("_") < 2 or len(key) > 200:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(digest)
        if cached and cached[0] > now:
            return self.user(cached[1])  # revocation is read every time
        user_id, secret = key[3:].split("_", 1)
        with self._connect() as db:
            row = db.execute("SELECT salt, hash FROM users WHERE id = ? AND revoked IS NULL", (user_id,)).fetchone()
        if row is None or not hmac.compare_digest(_hash(secret, row[0]), row[1]):
            return None
        with self._lock:
            self._verified[digest] = (now + CACHE_SECONDS, user_id)
        return self.user(user_id)

    def pseudonym(self, customer_id: str) -> str:
        """What the audit log stores for a customer: an HMAC of the id, never the id."""
        return hmac.new(self.secret, customer_id.encode(), hashlib.sha256).hexdigest()[:32]

    def audit(self, user: User, action: str, customer_id: str | None = None, detail: str | None = None) -> None:
        target = self.pseudonym(customer_id) if customer_id is not None else detail
        with self._connect() as db:
            db.execute("INSERT INTO audit VALUES (?, ?, ?, ?)",
                       (dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), user.name, action, target))

    def audit_log(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT at, user, action, target FROM audit ORDER BY rowid").fetchall()
        return [dict(zip(("at", "user", "action", "target"), r)) for r in rows]


def store_for(outputs_dir: Path) -> UserStore:
    return UserStore(Path(outputs_dir) / DATABASE)
