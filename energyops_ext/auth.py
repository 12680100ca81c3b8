"""Who may do what.

``EnergyOpsIdentityProvider`` adds read-only *operator* tokens beside the server's own token (the
dashboards use one), and names the token's user after the desk account so activities carry a
real name. ``EnergyOpsAuthorizer`` lets operators read ``energyops`` and nothing else: no
kernels, no files, no writes, no runs.

An operator is recognized only by EnergyOps handlers. Anywhere else on the server (the Lab and
tree pages, which carry the server's own token in their page config, kernels, terminals,
contents, sessions, static files, the login page) the operator's token or login cookie gets a
403 before the handler runs: no page, no redirect, no login cookie.
"""

from __future__ import annotations

import getpass
import hmac
from collections.abc import Awaitable
from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web
from traitlets import Set, Unicode, default

OPERATOR = "operator"
OPERATOR_ONLY_ENERGYOPS = (
    "the operator credential is for EnergyOps API reads (/energyops/api/) only; "
    "this page or route needs the server's own token"
)


def is_energyops_handler(handler: Any) -> bool:
    # imported here: the handlers package imports this module (health.py asks is_read_only)
    from .handlers.base import EnergyOpsHandler

    return isinstance(handler, EnergyOpsHandler)


def is_read_only(handler: Any, user: User | None) -> bool:
    """Whether ``user`` may only read, by the server's authorizer: its ``read_only_users``
    when it is an ``EnergyOpsAuthorizer``, else the operator."""
    if user is None:
        return False
    authorizer = getattr(handler, "settings", {}).get("authorizer")
    names = (
        authorizer.read_only_users if isinstance(authorizer, EnergyOpsAuthorizer) else {OPERATOR}
    )
    return user.username in names


def refuse_outside_energyops(handler: web.RequestHandler) -> None:
    """End the request with a JSON 403, whatever the handler would have rendered."""
    from .handlers.base import error_body

    handler.clear()
    handler.set_status(403)
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    raise web.Finish(error_body(403, "operator_read_only", OPERATOR_ONLY_ENERGYOPS))


class EnergyOpsIdentityProvider(IdentityProvider):
    operator_token = Unicode(
        "",
        help="A token that identifies the read-only operator (dashboards). Empty: none.",
    ).tag(config=True)
    user_name = Unicode(help="Name of the user the server's own token stands for.").tag(config=True)

    @default("user_name")
    def _default_user_name(self) -> str:
        try:
            return getpass.getuser()
        except Exception:
            return "desk"

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        """The user of a token or login cookie; a read-only user outside an EnergyOps handler
        is answered with a 403 here, before the handler can render anything."""
        found = super().get_user(handler)
        user = await found if isinstance(found, Awaitable) else found
        if is_read_only(handler, user) and not is_energyops_handler(handler):
            refuse_outside_energyops(handler)
        return user

    async def get_user_token(self, handler: Any) -> User | None:
        supplied = self.get_token(handler)
        if (
            self.operator_token
            and supplied
            and hmac.compare_digest(supplied.encode(), self.operator_token.encode())
        ):
            return User(username=OPERATOR, name="Operator", display_name="Operator (read-only)")
        user = await super().get_user_token(handler)
        if user is None:
            return None
        return User(username=self.user_name, name=self.user_name, display_name=self.user_name)

    def set_login_cookie(self, handler: web.RequestHandler, user: User) -> None:
        """No login cookie for a read-only user outside EnergyOps (the request is refused)."""
        if is_read_only(handler, user) and not is_energyops_handler(handler):
            return
        super().set_login_cookie(handler, user)


class EnergyOpsAuthorizer(Authorizer):
    read_only_users = Set({OPERATOR}, help="Users who may only read the energyops resource.").tag(
        config=True
    )

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if user.username in self.read_only_users:
            return resource == "energyops" and action == "read" and is_energyops_handler(handler)
        return True
