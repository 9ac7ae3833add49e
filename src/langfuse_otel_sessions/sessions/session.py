"""`Session`: a conversation's id, local metadata and creation time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

from ..attributes import DEFAULT_MAX_ID_LENGTH
from ..ids import check_id, new_session_id

if TYPE_CHECKING:  # typing_extensions: for Python 3.10's type checkers only, never imported
    from typing_extensions import Required, Unpack


class ScoreFields(TypedDict, total=False):
    """The keyword arguments of a score, written once (docs/scores.md has the rules)."""

    name: Required[str]
    value: float | bool | None
    string_value: str | None
    data_type: str | None
    comment: str | None
    id: str | None
    config_id: str | None
    metadata: Mapping[str, Any] | None


_score_session: Callable[..., str] | None = None  # set by the scores module (it imports us)


def score_with(score_session: Callable[..., str]) -> None:
    global _score_session  # noqa: PLW0603 - one scorer per process, set at import
    _score_session = score_session


@dataclass(frozen=True)
class Session:
    """A Langfuse session; ``metadata`` stays in this process (never in baggage)."""

    id: str
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    id_generated: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        check_id(self.id, DEFAULT_MAX_ID_LENGTH)
        if not isinstance(self.metadata, MappingProxyType):
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if self.created_at.tzinfo is None:
            raise ValueError("Session.created_at must be timezone-aware")

    @staticmethod
    def new_id() -> str:
        """A fresh id: ``"session_"`` + 24 lowercase hex characters from a CSPRNG."""
        return new_session_id()

    @classmethod
    def start(cls, id: str | None = None, metadata: Mapping[str, Any] | None = None) -> Session:
        """Start a session with ``id`` (validated) or a new one; ``created_at`` is now, in UTC."""
        return cls(
            id=new_session_id() if id is None else id,
            metadata=dict(metadata or {}),
            id_generated=id is None,
        )

    def score(self, **fields: Unpack[ScoreFields]) -> str:
        """``score_session(self, ...)``: returns the score id."""
        assert _score_session is not None  # noqa: S101 - the package imports the scores module
        return _score_session(self, **fields)

    @staticmethod
    def get_id(session_or_id: Session | str) -> str:
        """The id of a :class:`Session`, or the string itself; ``TypeError`` for anything else."""
        if isinstance(session_or_id, Session):
            return session_or_id.id
        if isinstance(session_or_id, str):
            return session_or_id
        raise TypeError(
            f"expected a Session or a session id string, got {type(session_or_id).__name__}"
        )
