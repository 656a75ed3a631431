"""Cache keys of the credentials service, and this process's striped locks.

One entry per (user, scope); the policy hash is checked inside the entry rather than put in the
key, so that forgetting a user drops all of their entries with one ``delete_many`` over the
known scopes, without an index.
"""

from __future__ import annotations

import threading
import zlib

_CACHE_VERSION = "v1"


def entry_key(user_pk: int, scope: str) -> str:
    return f"tokens:{_CACHE_VERSION}:creds:{user_pk}:{scope}"


def lock_key(key: str) -> str:
    """Held (``cache.add``) by the one request of the fleet that calls STS for `key`."""
    return f"{key}:lock"


def failure_key(key: str) -> str:
    """Remembers for a few seconds that STS failed for `key`, and how."""
    return f"{key}:failed"


def rate_counter_key(scope: str, user_pk: int) -> str:
    # The name DRF's SimpleRateThrottle would use, so operators find it where they expect.
    return f"throttle_{scope}_{user_pk}"


# Striped so that memory stays bounded however many users there are.
_LOCAL_LOCKS = tuple(threading.Lock() for _ in range(64))


def local_lock(key: str) -> threading.Lock:
    """This process's lock for `key`: the requests of one worker queue here, not at Redis."""
    return _LOCAL_LOCKS[zlib.crc32(key.encode()) % len(_LOCAL_LOCKS)]
