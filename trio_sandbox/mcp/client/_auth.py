"""The HTTP transport's authorization hook: who supplies the ``Authorization`` header, and who
is asked what to do when the server answers 401 or 403 (an OAuth client, in ``oauth``).

A leaf of the client, like ``_transport``: it imports nothing of the transports.
"""

from __future__ import annotations

from typing import Final, Protocol

import attrs

# How many times one request is sent again after a 401/403 that the hook answered with "retry":
# enough for a refresh and a step-up in a row, bounded so that a server that never accepts a
# token cannot keep a request going.
MAX_AUTH_RETRIES: Final = 3


@attrs.frozen
class AuthChallenge:
    """A 401 or 403 answer to a request that carried (or could have carried) authorization."""

    status: int
    www_authenticate: str | None  # the raw WWW-Authenticate header, None when absent


class HttpAuth(Protocol):
    """Authorization for the requests of one Streamable HTTP transport."""

    async def authorization(self) -> str | None:
        """The ``Authorization`` header value to send ("Bearer ..."), None to send none."""
        ...

    async def challenged(self, challenge: AuthChallenge) -> bool:
        """The server answered 401/403: True sends the same request once more (with a fresh
        :meth:`authorization`), False lets the HTTP status error stand. May raise."""
        ...
