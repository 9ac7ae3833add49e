"""A session and user id pair, as spans carry them."""

from __future__ import annotations

from typing import NamedTuple


class TraceIds(NamedTuple):
    """A session and user id (either may be ``None``)."""

    session_id: str | None
    user_id: str | None
