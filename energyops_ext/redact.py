"""Credentials out of anything shown or logged.

``mask_url`` is a pure string function: it never parses strictly (a URL a user configured may
be malformed, and the page or log line that shows it must still work) and never raises.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# Query keys whose values are credentials (substring match on the lowercased, unescaped key):
# libpq's password / sslpassword / sslkey, the user name, and the usual token spellings.
SECRET_KEY_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "user")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def mask_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``, or only ``user@``) replaced by ``***@``
    and the values of credential-like query parameters (``?password=...``) by ``***``.
    Paths are left as they are (a SQLite URL is shown unchanged)."""
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group() if scheme_match else ""
    rest = url[len(scheme) :]
    rest, hash_sign, fragment = rest.partition("#")
    rest, question_mark, query = rest.partition("?")
    if not rest.startswith("/") and "@" in rest:
        # userinfo ends at the last @ (an unescaped @ or / may sit in a password)
        rest = MASK + rest[rest.rindex("@") :]
    if question_mark:
        query = "&".join(_mask_parameter(part) for part in query.split("&"))
    return f"{scheme}{rest}{question_mark}{query}{hash_sign}{fragment}"


def _mask_parameter(part: str) -> str:
    key, equals, _value = part.partition("=")
    if equals and is_secret_key(key):
        return f"{key}={MASK}"
    return part


def is_secret_key(key: str) -> bool:
    lowered = unquote(key).lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)
