"""The emulator's notion of "now".

Tests move it forward to expire tokens and to skew clocks without sleeping; everything in the
emulator that compares times (token expiry, request skew, presigned URL expiry) asks this clock.
"""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
