"""`make fleet`: the production layout on this machine, in one terminal.

Two app instances (gunicorn, 2 workers each) behind HAProxy, in front of a PostgreSQL primary
and its streaming replica, a redis-server and the STS/OSS emulator, all the fleet's own on free
ports in a temporary folder (scripts/fleet_stack.py; the tests start the same fleet). Prints the
URLs, a user and a walk-through; Ctrl-C (or SIGTERM) stops everything and removes the folder.

FLEET_INSTANCES (default 2) and FLEET_WORKERS (default 2) change the shape. Needs haproxy,
redis-server and PostgreSQL's server programs (Debian: apt-get install -y haproxy redis-server
postgresql); nothing is installed by this script.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.fleet_stack import Fleet


def _log(message: str) -> None:
    print(f"[make fleet] {message}", flush=True)


def _banner(fleet: Fleet, user: dict) -> str:
    assert fleet.balancer is not None
    instances = "\n".join(
        f"   Instance {i.name}   {i.url}   (log {i.log_path})" for i in fleet.instances
    )
    return f"""
========================================================================================
 The fleet is running.

   Load balancer  {fleet.url}   (HAProxy; X-Served-By names the instance)
   HAProxy stats  {fleet.balancer.stats_url}
{instances}
   Emulator       {fleet.emulator.endpoint}   (STS + OSS; {fleet.emulator.endpoint}/_emulator/stats)
   PostgreSQL     {fleet.primary.url}   (primary)
                  {fleet.replica.url}   (streaming replica)
   Redis          {fleet.redis.url}
   Files          {fleet.directory}

   User           {user["username"]} / {user["password"]}

 Walk-through (another terminal):

   TOKEN=$(curl -s -X POST {fleet.url}/api/auth/login/ -H 'Content-Type: application/json' \\
     -d '{{"username": "{user["username"]}", "password": "{user["password"]}"}}' \\
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
   for i in 1 2 3 4; do curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" \\
     {fleet.url}/api/sts/credentials/ | grep -i x-served-by; done
   curl -s {fleet.emulator.endpoint}/_emulator/stats    # one AssumeRole for both instances

 Ctrl-C stops everything.
========================================================================================
"""


def main() -> int:
    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    fleet: Fleet | None = None
    try:
        fleet = Fleet.start(
            instances=int(os.environ.get("FLEET_INSTANCES", "2")),
            workers=int(os.environ.get("FLEET_WORKERS", "2")),
            say=_log,
        )
        (user,) = fleet.users("fleet-demo-", 1)
        print(_banner(fleet, user), flush=True)
        while True:
            for part, process in [(i.name, i.process) for i in fleet.instances] + [
                ("HAProxy", fleet.balancer.process if fleet.balancer else None),
                ("the emulator", fleet.emulator.process),
            ]:
                if process is not None and process.poll() is not None:
                    _log(f"{part} exited with status {process.returncode}; stopping the rest")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        _log("stopping ...")
        return 0
    except RuntimeError as exc:
        print(f"make fleet: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        if fleet is not None:
            fleet.close()
        _log("stopped.")


if __name__ == "__main__":
    sys.exit(main())
