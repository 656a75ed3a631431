"""Cache keys of the credentials service, and this process's per-key locks.

An entry's key names everything that decides whether it may be served: the user, their
``credentials_epoch`` (raised by every suspension), the scope, and a digest of the release's
side of it (the policy's hash, the role assumed and the key that seals the entry; see
sealing.entry_version). Two releases that differ in any of these (a rolling deploy) keep two
entries side by side instead of replacing each other's on every request, and a suspended user's
old entries are unreachable whatever instance or release asks.

Every key of one user carries the hash tag ``{u<pk>}``: in a Redis Cluster (or a proxy in front
of one) the keys of one user live in one hash slot, so the rate counter and the entry can be
counted and read by one script, and dropping a user's keys is one multi-key command. The cache's
KEY_PREFIX must not contain ``{`` (tokens.checks says so at start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from appserver.cache import user_tag

_CACHE_VERSION = "v2"
_VERSION_CHARS = 16  # 64 bits tell releases apart; the entry is checked in full anyway


def entry_key(user_pk: int, epoch: int, scope: str, version: str) -> str:
    """`version`: sealing.entry_version of the policy (a hex digest)."""
    return (
        f"tokens:{_CACHE_VERSION}:{user_tag(user_pk)}:e{epoch}:{scope}:{version[:_VERSION_CHARS]}"
    )


def lock_key(key: str) -> str:
    """Held by the one request of the fleet that calls STS for `key`."""
    return f"{key}:lock"


def failure_key(key: str) -> str:
    """Remembers for a few seconds that STS failed for `key`, and how."""
    return f"{key}:failed"


def rate_counter_key(scope: str, user_pk: int) -> str:
    # DRF's SimpleRateThrottle name (throttle_<scope>_<ident>), with the user's hash tag as the
    # ident so that the counter shares the entry's slot.
    return f"throttle_{scope}_{user_tag(user_pk)}"


class KeyedLocks:
    """One lock per key, made while someone holds or waits for it and dropped after: requests of
    this worker for the same key queue here (not at Redis), and nobody waits behind another
    key's slow STS call."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def held(self, key: str, *, timeout: float) -> Iterator[bool]:
        """Yields whether the lock was taken within `timeout` seconds."""
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
        acquired = lock.acquire(timeout=timeout)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                _, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)


local_locks = KeyedLocks()
