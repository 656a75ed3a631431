"""Settings for the test suite: the project's settings with what makes a real suite fast and
lets it run on several xdist workers at once (as cookiecutter-django's test settings do).

Nothing under test is replaced: PostgreSQL, Redis and the emulator stay real. Only password
hashing is cheap (a PBKDF2 hash per user fixture took most of the run time; the suite tests
authentication, not PBKDF2), and each xdist worker gets its own cache key prefix so that one
worker clearing its keys between tests never touches another's (pytest-django already gives
each worker its own test database).
"""

import os
import subprocess
import sys
from pathlib import Path

# The reports' replica (REPORTS_DATABASE_URL) is real: a streaming replica of the test server.
# .ci/run starts it; otherwise the first process to get here starts it with the same script
# (seconds, once; later calls reuse it in milliseconds). The URL is handed down to the xdist
# workers as TEST_REPORTS_REPLICA_URL and taken out of REPORTS_DATABASE_URL, so that the
# processes the tests start with settings of their own (a SQLite `check --deploy`) do not get it.
_replica_url = os.environ.pop("REPORTS_DATABASE_URL", "") or os.environ.get(
    "TEST_REPORTS_REPLICA_URL", ""
)
if not _replica_url and os.environ.get("DATABASE_URL", "").startswith("postgres"):
    _made = subprocess.run(
        [sys.executable, str(Path(__file__).parent.parent / "scripts" / "replica.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    if _made.returncode:
        raise RuntimeError(f"The reports replica could not be started:\n{_made.stderr}")
    _replica_url = _made.stdout.strip()
if _replica_url:
    os.environ["TEST_REPORTS_REPLICA_URL"] = os.environ["REPORTS_DATABASE_URL"] = _replica_url

from appserver.settings import *  # noqa: E402, F403
from appserver.settings import CACHES, DATABASES  # noqa: E402

os.environ.pop("REPORTS_DATABASE_URL", None)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Its `flush` empties the database between transactional tests with DELETE instead of TRUNCATE.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.cleanup"]  # noqa: F405

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
for _alias in CACHES.values():
    _alias["KEY_PREFIX"] = f"test-{_WORKER}"

if "reports" in DATABASES:
    # The replica's copy of each worker's test database has the primary's name (pytest-django
    # suffixes both aliases alike); appserver/db/replica/base.py waits for it to arrive.
    DATABASES["reports"]["NAME"] = DATABASES["default"]["NAME"]
# Reports read the primary unless a test takes the `replica` fixture (tests/reports/):
# the replica only shows committed rows, and most report tests write theirs in a transaction
# that is rolled back.
REPORTS_DATABASE = None
