"""Benchmark: the credentials endpoint through HAProxy with one app instance vs. two.

    .venv/bin/python bench/fleet_bench.py            # needs haproxy, redis-server, PostgreSQL

One run, one fleet (scripts/fleet_stack.py: its own PostgreSQL + replica, redis-server, the
emulator in a process of its own, two instances of gunicorn with 2 workers each, HAProxy in
front): N users warm the cache (one AssumeRole per user), then the load generator (`wrk` when
installed, else threads with `requests` sessions) runs against the load balancer in alternating
rounds: one instance in rotation (the other set to `maint` on HAProxy's runtime API), then
both. The figures are the means over the rounds; the load average is printed beside them.

Prints both request rates, the ratio and the AssumeRole calls made during the measurement
(target: none after the warm-up, however many requests and instances).

Two instances on one machine share its cores with each other, HAProxy, Redis, PostgreSQL and
the load generator: the ratio measures what a second instance adds on this machine, which on 2
cores is far from 2x (the cores, not the instance, are the limit; the server CPU per request is
printed for both sides to show it). On separate machines each instance brings its own cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.credentials_bench import cpu_seconds, run_threads, run_wrk  # noqa: E402
from scripts.fleet_stack import Fleet  # noqa: E402


def _server_pids(fleet: Fleet) -> list[int]:
    """Every process that serves a request: the instances' masters and workers, HAProxy and
    redis-server (PostgreSQL is not on the warm path)."""
    pids = [fleet.balancer.process.pid, fleet.redis.process.pid]
    for instance in fleet.instances:
        master = instance.process.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        pids += [master, *map(int, children)]
    return pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=6, help="per measurement")
    parser.add_argument("--rounds", type=int, default=4, help="1-instance/2-instance pairs")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="per gunicorn worker")
    parser.add_argument("--threads-client", action="store_true", help="do not use wrk")
    args = parser.parse_args()

    started = time.monotonic()
    fleet = Fleet.start(
        threads=args.threads,
        env={"THROTTLE_CREDENTIALS": "100000000/min", "LOG_LEVEL": "WARNING"},
        say=lambda message: print(f"[fleet] {message}", flush=True),
    )
    try:
        tokens = [user["access"] for user in fleet.users("bench-fleet-", args.users)]
        path = "/api/sts/credentials/?scope=readwrite"
        session = requests.Session()
        for token in tokens:  # warm: one AssumeRole per user, through the load balancer
            for _ in range(2):
                response = session.get(
                    fleet.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
                if response.status_code != 200:
                    raise SystemExit(f"warm-up: {response.status_code} {response.text}")
        calls_after_warmup = fleet.emulator.assume_role_calls()

        use_wrk = shutil.which("wrk") is not None and not args.threads_client
        load = run_wrk if use_wrk else run_threads
        generator = "wrk -t2" if use_wrk else f"{args.connections} threads with requests sessions"
        print(
            f"HAProxy -> gunicorn instances of 2 workers x {args.threads} threads, PostgreSQL "
            f"primary + replica, Redis, {args.users} users, {args.connections} connections, "
            f"{args.seconds} s per run, load: {generator}, {os.cpu_count()} CPUs "
            f"(fleet up in {time.monotonic() - started:.0f} s)"
        )
        results: dict[int, list[dict]] = {1: [], 2: []}
        loads: list[float] = []
        for _ in range(args.rounds):
            for instances in (1, 2):
                fleet.balancer.set_state("b", "maint" if instances == 1 else "ready")
                pids = _server_pids(fleet)
                cpu_before = cpu_seconds(pids)
                result = load(fleet.url, path, tokens, args.seconds, args.connections)
                result["cpu_ms"] = (cpu_seconds(pids) - cpu_before) * 1000 / result["requests"]
                loads.append(os.getloadavg()[0])
                results[instances].append(result)
                print(
                    f"  {instances} instance{'s' if instances > 1 else ' '} "
                    f"{result['rate']:9.1f} req/s  {result['requests']:7d} requests"
                    f"  non-2xx {result['non_2xx']}  avg latency {result['latency_avg']}"
                    f"  CPU {result['cpu_ms']:.2f} ms/request  load {loads[-1]:.1f}"
                )
        calls_during = fleet.emulator.assume_role_calls() - calls_after_warmup
    finally:
        fleet.close()

    one = statistics.mean(r["rate"] for r in results[1])
    two = statistics.mean(r["rate"] for r in results[2])
    print()
    print(f"1 instance behind HAProxy:      {one:9.1f} req/s")
    print(f"2 instances behind HAProxy:     {two:9.1f} req/s")
    print(f"ratio (2 / 1):                  {two / one:9.2f}")
    cpu = {n: statistics.median(r["cpu_ms"] for r in rs) for n, rs in results.items()}
    print(
        f"server CPU per request (median): 1 instance {cpu[1]:.2f} ms, 2 instances "
        f"{cpu[2]:.2f} ms (the same work either way: the cores are the limit)"
    )
    print(
        f"AssumeRole calls: warm-up {calls_after_warmup} ({args.users} users), "
        f"during the runs {calls_during} (target 0)"
    )
    cores = os.cpu_count() or 1
    print(
        f"load average during the runs:   {statistics.mean(loads):9.1f} on {cores} CPUs. Both "
        "instances, HAProxy, Redis, PostgreSQL and the load generator share these cores, and "
        "the work per request is the same either way (CPU above), so on an idle machine the "
        "ratio tends to 1: two workers already keep the cores busy. On a machine shared with "
        "other work, four workers win a larger share of the cores than two, which shows as a "
        "ratio above 1. On machines of their own, each instance brings its own cores "
        f"(about {1000 * cores / cpu[1]:.0f} req/s per {cores} cores at "
        f"{cpu[1]:.2f} ms a request)."
    )
    non_2xx = sum(r["non_2xx"] for rs in results.values() for r in rs)
    if non_2xx or calls_during:
        raise SystemExit(f"failed: {non_2xx} non-2xx answers, {calls_during} AssumeRole calls")


if __name__ == "__main__":
    main()
