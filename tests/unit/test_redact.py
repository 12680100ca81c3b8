"""mask_url: what a URL looks like wherever it is shown or logged."""

from __future__ import annotations

import pytest

from energyops_ext.redact import MASK, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:secret@host/db", "postgresql://***@host/db"),
        (
            "postgresql+psycopg://energy:s3cr%40t@db.internal:5432/ops",
            "postgresql+psycopg://***@db.internal:5432/ops",
        ),
        ("postgresql://user@host/db", "postgresql://***@host/db"),
        # what SQLAlchemy's render_as_string(hide_password=True) gives: the user is left
        ("postgresql+psycopg://energy:***@host/db", "postgresql+psycopg://***@host/db"),
        # an unescaped @ or / in the password: everything up to the last @ is userinfo
        ("postgresql://u:p@ss/w@rd@host/db", "postgresql://***@host/db"),
        (
            "postgresql:///ops?password=secret&sslmode=require",
            "postgresql:///ops?password=***&sslmode=require",
        ),
        (
            "postgresql://host/ops?user=admin&PassWord=x&application_name=energyops",
            "postgresql://host/ops?user=***&PassWord=***&application_name=energyops",
        ),
        ("postgresql://host/ops?pass%77ord=x", "postgresql://host/ops?pass%77ord=***"),
        (
            "postgresql://host/ops?sslpassword=x&sslkey=/k",
            "postgresql://host/ops?sslpassword=***&sslkey=***",
        ),
        (
            "https://hooks.example/notify?token=abc&channel=desk",
            "https://hooks.example/notify?token=***&channel=desk",
        ),
        ("mailto://desk:pw@mail.example", "mailto://***@mail.example"),
        ("redis://:pw@cache:6379/0", "redis://***@cache:6379/0"),
        ("postgresql://host/db", "postgresql://host/db"),
    ],
)
def test_credentials_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/energyops/energyops.db",
        "sqlite:///relative/energyops.db",
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:////tmp/desk@home/energyops.db",
        "sqlite+pysqlite:////srv/data/energyops.db?timeout=30",
    ],
)
def test_sqlite_paths_are_unchanged(url: str) -> None:
    assert mask_url(url) == url


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a url",
        "://",
        "postgresql://[::1",
        "postgresql://user:secret@[::1",
        "\x00@\x00",
        "?password",
        "?password=",
        "=&=&",
        "@",
        "@@@",
        "a" * 100_000,
        "postgresql://" + "@" * 10_000 + "host/db",
        "\ud800://x",
    ],
    ids=repr,
)
def test_garbage_does_not_crash_and_masking_is_idempotent(garbage: str) -> None:
    shown = mask_url(garbage)
    assert isinstance(shown, str)
    assert mask_url(shown) == shown


def test_a_secret_never_survives() -> None:
    for url in [
        "postgresql://root:hunter2@/db?password=hunter2",
        "postgresql://root:hunter2@[::1",
        "hunter2@host",
        "x://y/?a=1&secret=hunter2#frag",
    ]:
        assert "hunter2" not in mask_url(url), url
        assert MASK in mask_url(url)
