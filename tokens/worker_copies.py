"""This worker's short-lived copies of the shared credentials cache, for unmetered requests.

Why: the server's own uses of a user's credentials (signing upload URLs and forms, which their
callers rate-limit themselves) and requests while the "credentials" rate is off need no count in
Redis, so each worker keeps what it last read from Redis for ``CREDENTIALS_LOCAL_SECONDS`` and
serves them from it without a round trip.

Metered requests (the credentials endpoint under its per-user rate) always make their one round
trip, which counts the request and reads the entry: a rate counted in local leases is refused
early by up to the permits other workers leased and never spent, which grows with the fleet (at
120/min a user whose requests spread over 32 workers lost 88 of 120). Counting every request in
Redis keeps the rate exact at any number of workers and instances.

What stays true:

- Redis remains the one shared source: STS is still called once per (user, scope, policy) per
  window by the whole fleet (a copy is only ever made of an entry read from Redis or just issued).
- Suspension: the copies are keyed by the user's ``credentials_epoch``, which
  ``credentials_forget_user`` increments in the database. A request knows it from the user row,
  or from its access token's claims while Redis holds the token's epoch; suspension moves that
  epoch before the row changes and tokens minted since carry the new credentials epoch
  (accounts/token_state.py), so no worker serves a dropped copy, even after an unsuspension.
- Freshness: a copy is served only while it passes the same checks as the Redis entry (policy
  hash, refresh margin) and is younger than ``CREDENTIALS_LOCAL_SECONDS``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_MAX_USERS = 10_000  # per worker; beyond it the table starts again (only costs round trips)


class WorkerCopies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # user pk -> {(epoch, scope): (entry, monotonic time it was read)}
        self._users: dict[int, dict[tuple[int, str], tuple[Any, float]]] = {}

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
        usable: Callable[[Any], bool],
    ) -> Any | None:
        """The copy to hand out; None when this request must go to Redis."""
        with self._lock:
            copies = self._users.get(user_pk)
            copy = copies.get((epoch, scope)) if copies else None
        if copy is None or now - copy[1] >= max_age or not usable(copy[0]):
            return None
        return copy[0]

    def remember(self, *, user_pk: int, epoch: int, scope: str, entry: Any, now: float) -> None:
        with self._lock:
            copies = self._users.get(user_pk)
            if copies is None:
                if len(self._users) >= _MAX_USERS:
                    self._users.clear()
                copies = self._users[user_pk] = {}
            # An older epoch's copies are dead: drop them with the first new one.
            for key in [key for key in copies if key[0] != epoch]:
                del copies[key]
            copies[(epoch, scope)] = (entry, now)
