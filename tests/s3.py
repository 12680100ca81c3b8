"""A real S3 endpoint on loopback (moto's standalone server) for storage tests.

``with moto_s3() as (endpoint_url, options):`` starts the server on 127.0.0.1 and a free port and
points every AWS setting of this process at it (fake credentials, no instance metadata, no user
config files), so nothing leaves the machine. ``options`` are what ``open_storage`` passes to
s3fs; ``make_bucket`` creates a bucket there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from typing import Any

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@contextlib.contextmanager
def aws_environment(endpoint_url: str) -> Iterator[None]:
    """AWS_* variables of this process pointed at ``endpoint_url``; the old ones come back."""
    saved = {name: os.environ.get(name) for name in (*ENV, *UNSET, "AWS_ENDPOINT_URL")}
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint_url)
    for name in UNSET:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def moto_s3() -> Iterator[tuple[str, dict[str, Any]]]:
    """(endpoint_url, s3fs options) of a moto S3 server that lives as long as the block."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        options: dict[str, Any] = {
            "client_kwargs": {"endpoint_url": endpoint_url},
            "key": ENV["AWS_ACCESS_KEY_ID"],
            "secret": ENV["AWS_SECRET_ACCESS_KEY"],
        }
        with aws_environment(endpoint_url):
            yield endpoint_url, options
    finally:
        server.stop()


def make_bucket(options: dict[str, Any], name: str | None = None) -> str:
    """Create a bucket on the server ``options`` point at; returns its name."""
    import s3fs

    name = name or f"energyops-{secrets.token_hex(4)}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    fs.mkdir(name)
    return name
