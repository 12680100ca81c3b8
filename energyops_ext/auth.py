"""Who may do what.

``EnergyOpsIdentityProvider`` adds read-only *operator* tokens beside the server's own token (the
dashboards use one), and names the token's user after the desk account so activities carry a
real name. ``EnergyOpsAuthorizer`` lets operators read ``energyops`` and nothing else: no
kernels, no files, no writes, no runs.
"""

from __future__ import annotations

import getpass
import hmac
from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import Set, Unicode, default

OPERATOR = "operator"


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


class EnergyOpsAuthorizer(Authorizer):
    read_only_users = Set({OPERATOR}, help="Users who may only read the energyops resource.").tag(
        config=True
    )

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if user.username in self.read_only_users:
            return resource == "energyops" and action == "read"
        return True
