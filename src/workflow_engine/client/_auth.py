"""What a client authenticates with, and when a login's access token needs renewing.

No I/O here: `Client` and `AsyncClient` send the login and refresh calls this asks for, each
under its own lock. The lock matters: a refresh token is single use, and the server revokes
the whole session when one is presented twice, so two requests that both saw a 401 must not
both refresh. `generation` tells a request that waited for the lock whether the token it was
refused with has been replaced meanwhile.
"""

from __future__ import annotations

import time

from workflow_engine.client import _calls
from workflow_engine.client.errors import Unauthorized
from workflow_engine.schemas.auth import TokenResponse

#: A login's token is refreshed once this share of its lifetime has passed, before it expires.
REFRESH_AT = 0.8


class Session:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
    ) -> None:
        given = [name for name, value in (("api_key", api_key), ("token", token),
                 ("email and password", email and password)) if value]  # fmt: skip
        if len(given) > 1:
            raise ValueError(f"give one credential, not {' and '.join(given)}")
        if (email is None) != (password is None):
            raise ValueError("a login needs both email and password")
        self._email = email
        self._password = password
        self._access = api_key or token
        self._refresh: str | None = None
        self._renew_at = float("inf")
        self.generation = 0

    @property
    def renewable(self) -> bool:
        """A login: its token can be renewed. An API key or a given token cannot."""
        return self._password is not None

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access}"} if self._access else {}

    def due(self) -> bool:
        """Before a request: must the client log in, or refresh, first?"""
        if not self.renewable:
            return False
        return self._access is None or time.monotonic() >= self._renew_at

    def renewal(self) -> _calls.Call[TokenResponse]:
        """The call that renews the token: a refresh while there is a refresh token, else a
        login with the password."""
        if self._refresh is not None:
            return _calls.refresh(self._refresh)
        if self._email is None or self._password is None:
            raise Unauthorized("the credential was refused and cannot be renewed", status=401,
                               title="Unauthorized")  # fmt: skip
        return _calls.login(self._email, self._password)

    def renewed(self, tokens: TokenResponse) -> None:
        self._access = tokens.access_token
        self._refresh = tokens.refresh_token
        self._renew_at = time.monotonic() + tokens.expires_in * REFRESH_AT
        self.generation += 1

    def logged_out(self) -> None:
        """The session is revoked: a login logs in again on its next request."""
        if self.renewable:
            self._access = self._refresh = None
            self.generation += 1

    def refused(self) -> None:
        """A refresh was refused (expired, or the session logged out): log in again next."""
        self._refresh = None
