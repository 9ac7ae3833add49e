"""A logger that says a repeated problem once per interval and counts the rest."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("langfuse_otel_sessions")


class RateLimitedLog:
    """Logs each message key at most once per ``interval`` seconds; counts what it held back."""

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: object) -> None:
        self._log(logging.WARNING, key, message, args)

    def error(self, key: str, message: str, *args: object) -> None:
        self._log(logging.ERROR, key, message, args)

    def exception(self, key: str, message: str, *args: object) -> None:
        """An error with the current exception's traceback (call from an ``except`` block)."""
        self._log(logging.ERROR, key, message, args, exc_info=True)

    def _log(
        self, level: int, key: str, message: str, args: tuple[object, ...], exc_info: bool = False
    ) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            held_back = self._suppressed.pop(key, 0)
        if held_back:
            message, args = message + " (%d similar messages suppressed)", (*args, held_back)
        logger.log(level, message, *args, exc_info=exc_info)
