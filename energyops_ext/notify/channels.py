"""Apprise URLs: checked when a user gives them, masked whenever they are shown.

An apprise URL carries its credentials anywhere: in the userinfo (``mailto://user:pass@...``),
in the query (``?pass=...``) or as path segments (``slack://TokenA/TokenB/TokenC``). Apprise
knows, per service, which parts are secret (``url(privacy=True)``); what it cannot parse is
shown as its scheme alone.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from functools import lru_cache
from typing import Any

import apprise

from ..errors import Invalid
from ..redact import MASK, mask_url

MAX_URL_CHARS = 2048
MAX_CHANNELS = 20


_loaded = threading.Event()
_loading = threading.Lock()


def load_apprise() -> None:
    """Import apprise's plugins once. Its e-mail plugin imports the deprecated ``imghdr``
    (for its PGP support) and warns; that warning is apprise's, not ours."""
    if _loaded.is_set():
        return
    with _loading:
        if not _loaded.is_set():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                apprise.Apprise.instantiate("json://localhost", suppress_exceptions=True)
            _loaded.set()


def url_sha256(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


@lru_cache(maxsize=1024)
def _plugin(url: str) -> Any:
    """The apprise plugin of ``url``, or None when apprise does not recognise it."""
    load_apprise()
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def recognised(url: str) -> bool:
    return _plugin(url) is not None


def display_url(url: str) -> str:
    """``url`` for display: apprise's private form of its address (tokens shortened, passwords
    hidden) with our mask over userinfo and credential-like query values; never raises."""
    scheme, sep, _rest = url.partition("://")
    try:
        plugin = _plugin(url)
        private = str(plugin.url(privacy=True)) if plugin is not None else ""
    except Exception:
        private = ""
    if not private:
        return f"{scheme}://{MASK}" if sep else MASK
    address, _q, _query = private.partition("?")
    hidden = address.rsplit("@", 1)[-1]
    if "..." not in hidden and "*" not in hidden:
        # apprise hides nothing past the userinfo here: the URL as given, masked
        return mask_url(url)
    # tokens in the path (slack://T...2/A...D/...): apprise's form, with the given query
    _u, qsep, own_query = url.partition("?")
    return mask_url(address.rstrip("/") + (qsep + own_query if qsep else ""))


def check_channels(value: Any, field: str = "channels") -> list[str]:
    """A list of apprise URLs apprise recognises (422 naming the field and the item)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(
            f"{field} must be a list of apprise URLs (strings)",
            code="invalid_field",
            details={"field": field},
        )
    if len(value) > MAX_CHANNELS:
        raise Invalid(
            f"{field} has {len(value)} URLs; the limit is {MAX_CHANNELS}",
            code="invalid_field",
            details={"field": field},
        )
    urls: list[str] = []
    for index, raw in enumerate(value):
        url = raw.strip()
        where = f"{field}[{index}]"
        if len(url) > MAX_URL_CHARS:
            raise Invalid(
                f"{where} is {len(url)} characters; the limit is {MAX_URL_CHARS}",
                code="invalid_channel",
                details={"field": where},
            )
        if MASK in url:
            raise Invalid(
                f"{where} is a masked URL (it contains {MASK}); send the full apprise URL",
                code="invalid_channel",
                details={"field": where},
            )
        if not url or "\x00" in url or not recognised(url):
            raise Invalid(
                f"{where} is not an apprise URL apprise recognises: {display_url(url)!r}",
                code="invalid_channel",
                details={"field": where},
            )
        if url not in urls:
            urls.append(url)
    return urls
