"""Settings for benchmarks only: the app's settings plus a baseline endpoint (bench/urls.py).

Never used in production: the baseline view exists only in this URLconf.
"""

from appserver.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
