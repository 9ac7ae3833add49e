from __future__ import annotations

import dataclasses
import re
from datetime import timedelta, timezone

import pytest

from langfuse_otel_sessions import InvalidIdError, Session


def test_new_id_is_prefixed_lowercase_hex_and_unique() -> None:
    ids = {Session.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"session_[0-9a-f]{24}", i) for i in ids)


def test_start_without_id_makes_one_and_stamps_utc_creation_time() -> None:
    s = Session.start()
    assert re.fullmatch(r"session_[0-9a-f]{24}", s.id)
    assert s.created_at.tzinfo is not None
    assert s.created_at.utcoffset() == timedelta(0)
    assert dict(s.metadata) == {}


def test_start_keeps_id_and_freezes_a_copy_of_metadata() -> None:
    meta = {"topic": "billing"}
    s = Session.start(id="conv-42", metadata=meta)
    meta["topic"] = "changed"
    assert s.id == "conv-42"
    assert s.metadata["topic"] == "billing"
    with pytest.raises(TypeError):
        s.metadata["x"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad", ["", "x" * 201, "a\nb", "tab\there", "nul\x00", "c1\x85", "x ", " x", "\xa0x", "x\u3000"]
)
def test_start_rejects_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidIdError):
        Session.start(id=bad)


def test_naive_created_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Session("s", created_at=Session.start().created_at.replace(tzinfo=None))
    assert Session("s", created_at=Session.start().created_at.astimezone(timezone.utc)).id == "s"


def test_get_id_accepts_session_or_string_only() -> None:
    s = Session.start(id="abc")
    assert Session.get_id(s) == "abc"
    assert Session.get_id("xyz") == "xyz"
    for bad in (None, 42, b"bytes", ["abc"]):
        with pytest.raises(TypeError, match="expected a Session or a session id string"):
            Session.get_id(bad)  # type: ignore[arg-type]
