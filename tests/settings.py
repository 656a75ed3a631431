"""Settings for the test suite: the project's settings with what makes a real suite fast and
lets it run on several xdist workers at once (as cookiecutter-django's test settings do).

Nothing under test is replaced: PostgreSQL, Redis and the emulator stay real. Only password
hashing is cheap (a PBKDF2 hash per user fixture took most of the run time; the suite tests
authentication, not PBKDF2), and each xdist worker gets its own cache key prefix so that one
worker clearing its keys between tests never touches another's (pytest-django already gives
each worker its own test database).
"""

import os

from appserver.settings import *  # noqa: F403
from appserver.settings import CACHES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
for _alias in CACHES.values():
    _alias["KEY_PREFIX"] = f"test-{_WORKER}"
