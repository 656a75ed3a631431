"""This worker's short-lived copies of the shared credentials cache, and its share of each user's
"credentials" rate.

Why: on a warm cache the one Redis round trip per request (count the request, read the entry)
was the largest cost of the endpoint after authentication. A busy app asks for the same
credentials many times a minute, so each worker keeps what it last read from Redis for
``CREDENTIALS_LOCAL_SECONDS`` and serves from it.

What stays true:

- Redis remains the one shared source: STS is still called once per (user, scope) per window by
  the whole fleet (a copy is only ever made of an entry read from Redis or just issued).
- Suspension: the copies are keyed by the user's ``credentials_epoch``, which
  ``credentials_forget_user`` increments in the database. The user row is read on every
  request (authentication), so no worker serves a dropped copy, even after an unsuspension.
- Freshness: a copy is served only while it passes the same checks as the Redis entry (policy
  hash, refresh margin) and is younger than ``CREDENTIALS_LOCAL_SECONDS``.
- The rate limit is never exceeded: requests are counted in Redis in leases of permits, each
  permit counted before it is spent, and a worker spends its permits only inside the window
  Redis reported (rounded down). A worker leases at most an eighth of what the user has left,
  so a user whose requests spread over W workers can be refused up to about W/8 of the
  remainder early, never late; near the limit leases shrink to one request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_MAX_USERS = 10_000  # per worker; beyond it the table starts again (only costs round trips)
_LEASE_SHARE = 8


@dataclass
class _UserState:
    window_ends: float = 0.0  # time.monotonic(); permits are void from then on
    permits: int = 0
    seen_hits: int = 0  # the shared counter at this worker's last round trip
    copies: dict[tuple[int, str], tuple[Any, float]] = field(default_factory=dict)


class WorkerCopies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, _UserState] = {}

    def _state(self, user_pk: int) -> _UserState:  # under self._lock
        state = self._users.get(user_pk)
        if state is None:
            if len(self._users) >= _MAX_USERS:
                self._users.clear()
            state = self._users[user_pk] = _UserState()
        return state

    def clear(self) -> None:
        with self._lock:
            self._users.clear()

    def serve(
        self,
        *,
        user_pk: int,
        epoch: int,
        scope: str,
        now: float,
        max_age: float,
        metered: bool,
        usable: Callable[[Any], bool],
    ) -> Any | None:
        """The copy to hand out (one permit spent when the rate is `metered`); None when this
        request must go to Redis."""
        with self._lock:
            state = self._users.get(user_pk)
            if state is None:
                return None
            if metered and (state.permits <= 0 or now >= state.window_ends):
                return None
            copy = state.copies.get((epoch, scope))
            if copy is None or now - copy[1] >= max_age or not usable(copy[0]):
                return None
            if metered:
                state.permits -= 1
            return copy[0]

    def claim(self, *, user_pk: int, limit: int, now: float) -> int:
        """Spend one of this worker's permits for a request that goes to Redis anyway (its copy
        is missing or old) and return 0; without a permit, return how many requests to lease."""
        with self._lock:
            state = self._users.get(user_pk)
            if state is None or now >= state.window_ends:
                return max(1, limit // _LEASE_SHARE)
            if state.permits > 0:
                state.permits -= 1
                return 0
            # An eighth of what the user has left: leases shrink to one request near the limit.
            return max(1, (limit - state.seen_hits) // _LEASE_SHARE)

    def settle(
        self, *, user_pk: int, leased: int, hits: int, seconds_left: float, limit: int, now: float
    ) -> bool:
        """Record Redis's answer (the counter is now `hits`, the window ends in `seconds_left`)
        to a lease of `leased` requests (0: a permit was claimed); False: this one is refused."""
        with self._lock:
            state = self._state(user_pk)
            state.seen_hits = hits
            if not leased:
                return True
            # Every leased request was counted in Redis; those past the limit are never spent.
            granted = max(0, min(leased, limit - (hits - leased)))
            state.window_ends = now + seconds_left
            state.permits = granted - 1 if granted else 0
            return granted > 0

    def remember(self, *, user_pk: int, epoch: int, scope: str, entry: Any, now: float) -> None:
        with self._lock:
            state = self._state(user_pk)
            state.copies = {
                key: copy for key, copy in state.copies.items() if key[0] == epoch
            }  # an older epoch's copies are dead: drop them with the first new one
            state.copies[(epoch, scope)] = (entry, now)
