"""Secrets at rest and in transit: API keys, dashboard passwords, JWT access tokens.

API keys are long random strings, so SHA-256 of the plaintext is what is stored (plus a display
prefix); passwords are human-chosen, so they get scrypt with a random salt. Tokens are HS256 JWTs
whose expiry is checked against the server's clock, so tests with a fake clock can expire them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any

import jwt

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_SCOPES",
    "KEY_PATTERN",
    "TokenError",
    "decode_token",
    "display_prefix",
    "generate_api_key",
    "hash_api_key",
    "hash_password",
    "issue_token",
    "verify_password",
]

ALL_SCOPES = ("contacts:write", "contacts:delete", "tags:write", "sequences:write")
DEFAULT_SCOPES = ("contacts:write",)
KEY_PATTERN = re.compile(r"^meisa_(live|test)_[A-Za-z0-9_-]{32,}$")
TOKEN_LIFETIME = 3600

# scrypt cost: ~16 MiB and tens of milliseconds per check; slow for a guesser, fine for a login.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def generate_api_key(mode: str) -> str:
    """A new plaintext key, ``meisa_live_…`` or ``meisa_test_…`` with 43 random url-safe chars."""
    return f"meisa_{mode}_{secrets.token_urlsafe(32)}"


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def display_prefix(plaintext: str) -> str:
    """What lists show of a key: its mode prefix and four more characters, ``meisa_live_ab12``."""
    mode_prefix = "meisa_live_" if plaintext.startswith("meisa_live_") else "meisa_test_"
    return mode_prefix + plaintext[len(mode_prefix) : len(mode_prefix) + 4]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash``, salted per password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algorithm, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algorithm != "scrypt":
        return False
    expected = _unb64(digest)
    actual = hashlib.scrypt(
        password.encode(),
        salt=_unb64(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
        maxmem=2**26,
    )
    return hmac.compare_digest(actual, expected)


class TokenError(Exception):
    """The bearer token is malformed, forged or expired; the message says which."""


def _signing_key(secret: str) -> bytes:
    # A configured secret may be short ("change-me"); HS256 wants at least 32 bytes of key.
    return hashlib.sha256(secret.encode()).digest()


def issue_token(subject: str, *, secret: str, now: float, lifetime: int = TOKEN_LIFETIME) -> str:
    claims = {"sub": subject, "iat": int(now), "exp": int(now) + lifetime}
    return jwt.encode(claims, _signing_key(secret), algorithm="HS256")


def decode_token(token: str, *, secret: str, clock: Callable[[], float]) -> str:
    """The token's subject, after checking signature, algorithm, claims and expiry."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _signing_key(secret),
            algorithms=["HS256"],
            options={
                "require": ["sub", "iat", "exp"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"the token is not valid: {exc}") from None
    exp, subject = claims["exp"], claims["sub"]
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or not isinstance(subject, str):
        raise TokenError("the token's claims are malformed")
    if exp <= clock():
        raise TokenError("the token has expired")
    return subject
