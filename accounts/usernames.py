"""What makes two usernames the same account name.

A username is stored NFKC-normalised (fullwidth ``demo`` is plain ``demo``), is unique regardless of
case (a unique index on ``LOWER(username)``), and no two usernames may share a UTS #39 confusable
skeleton (``demo`` with a Cyrillic ``e``, ``rnary`` next to ``mary``). The skeleton comes from
ICU's SpoofChecker, the reference implementation of UTS #39, computed on the case-folded name so
that case and look-alikes are one rule. It is stored in its own unique column, so the database
refuses a look-alike even when two registrations race.
"""

from __future__ import annotations

import unicodedata
from functools import cache

import icu


def username_normalize(username: str) -> str:
    return unicodedata.normalize("NFKC", username)


@cache
def _spoof_checker() -> icu.SpoofChecker:
    return icu.SpoofChecker()


def username_skeleton(username: str) -> str:
    folded = username_normalize(username).casefold()
    return _spoof_checker().getSkeleton(0, folded)
