"""A PostgreSQL streaming replica of a local primary, for development, tests, CI and benches.

    python scripts/replica.py [--primary URL] [--port 5433] [--dir DIR] [--database NAME]
                              [--allow-replication] [--stop]

Prints the replica's URL (``postgres://USER@127.0.0.1:PORT/NAME``) on stdout and exits 0 once the
replica accepts read-only connections and streams from the primary. Idempotent: a replica already
running in DIR and streaming is reused as it is (a few milliseconds); one that is stopped is
started; one that no longer follows the primary (its WAL was recycled while it was down) is
made again. Concurrent callers (pytest-xdist workers) wait on a lock file beside DIR.

How it is made: ``pg_basebackup -R -X stream`` of the whole primary cluster into DIR (standby.signal
and primary_conninfo written by -R), a postgresql.conf and pg_hba.conf of its own (a Debian cluster
keeps both under /etc, so a base backup carries neither), then ``pg_ctl start`` on --port. When run
as root, PostgreSQL's programs run as the ``postgres`` user (the server refuses root).

The primary must accept replication connections from 127.0.0.1 (wal_level=replica, the default,
and a ``replication`` line in pg_hba.conf: the ``all`` database keyword does not cover
replication). --allow-replication adds ``host replication <user> 127.0.0.1/32 trust`` to the
primary's pg_hba.conf and reloads it (no restart) when the primary refuses; only .ci/run passes
it. No replication slot is used, on purpose: a replica left stopped must never make the primary
keep WAL until its disk fills. Such a replica is rebuilt on the next call instead.

Standard library and psycopg only: no Django, so other tools (the fleet test) can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg

# Parameters a hot standby must hold at least at the primary's value, or it refuses to start.
_AT_LEAST_PRIMARY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
STREAMING_WAIT_SECONDS = 30


def _log(message: str) -> None:
    print(f"replica: {message}", file=sys.stderr, flush=True)


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not versions:
        sys.exit("replica: PostgreSQL's programs (pg_ctl, pg_basebackup) are not installed.")
    return versions[-1]


def _as_owner(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the Debian packages' "postgres" user owns clusters.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - argv built here from PostgreSQL's own programs
        _as_owner(cmd), capture_output=True, text=True, **kwargs
    )


def _connect(host: str, port: int, user: str, dbname: str = "postgres", **kwargs):
    return psycopg.connect(
        host=host, port=port, user=user, dbname=dbname, connect_timeout=3, autocommit=True, **kwargs
    )


def _streaming(port: int, user: str, datadir: Path) -> bool | None:
    """True: ours and streaming; False: ours, not (yet) streaming; None: not ours or down."""
    try:
        with _connect("127.0.0.1", port, user) as conn:
            directory, recovering, status = conn.execute(
                "SELECT current_setting('data_directory'), pg_is_in_recovery(),"
                " (SELECT status FROM pg_stat_wal_receiver)"
            ).fetchone()
            if Path(directory).resolve() != datadir.resolve() or not recovering:
                return None
            # A test pauses replay to make the replica lag; one killed before resuming must not
            # leave it paused for every later caller.
            if conn.execute("SELECT pg_is_wal_replay_paused()").fetchone()[0]:
                _log("replay was left paused: resuming it")
                conn.execute("SELECT pg_wal_replay_resume()")
    except psycopg.Error:
        return None
    return status == "streaming"


def _wait_streaming(port: int, user: str, datadir: Path) -> bool:
    deadline = time.monotonic() + STREAMING_WAIT_SECONDS
    while time.monotonic() < deadline:
        if _streaming(port, user, datadir):
            return True
        time.sleep(0.2)
    return False


def _allow_replication(primary) -> None:
    """Add a trust line for replication from 127.0.0.1 to the primary's pg_hba.conf; reload."""
    user = primary.username or "postgres"
    with _connect(primary.hostname, primary.port or 5432, user) as conn:
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        line = f"host replication {user} 127.0.0.1/32 trust"
        if line not in hba.read_text().splitlines():
            _log(f"adding '{line}' to {hba} and reloading the primary (no restart)")
            with hba.open("a") as f:
                f.write(
                    f"# scripts/replica.py --allow-replication: local streaming replica\n{line}\n"
                )
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the postmaster re-reads pg_hba.conf asynchronously on SIGHUP


def _base_backup(primary, user: str, datadir: Path, port: int, allow: bool) -> None:
    bindir = _bindir()
    host, primary_port = primary.hostname or "127.0.0.1", primary.port or 5432
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(mode=0o700, parents=True)
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres", "postgres")
    cmd = [str(bindir / "pg_basebackup"), "-h", host, "-p", str(primary_port), "-U", user]
    cmd += ["-D", str(datadir), "-R", "-X", "stream", "-c", "fast", "--no-sync"]
    done = _run(cmd)
    if done.returncode and "replication connection" in done.stderr and allow:
        _allow_replication(primary)
        done = _run(cmd)
    if done.returncode:
        hint = ""
        if "replication connection" in done.stderr:
            hint = (
                "\n  The primary refuses replication from 127.0.0.1. Add to its pg_hba.conf"
                f" 'host replication {user} 127.0.0.1/32 trust' and reload it"
                " (SELECT pg_reload_conf()), or run this script once with --allow-replication."
            )
        sys.exit(f"replica: pg_basebackup failed: {done.stderr.strip()}{hint}")
    with _connect(host, primary_port, user) as conn:
        floors = {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in _AT_LEAST_PRIMARY}
    conf = {
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{datadir}'",
        "hot_standby": "on",
        # The primary keeps rows the replica's report queries still read, instead of the replica
        # cancelling them when replay removes those rows.
        "hot_standby_feedback": "on",
        "shared_buffers": "32MB",
        # A copy made again whenever it is lost: no fsync, so it starts without syncing every
        # file the base backup wrote (seconds) and costs the shared disk less.
        "fsync": "off",
        "logging_collector": "off",
        "cluster_name": f"'replica-{port}'",
        **floors,
    }
    (datadir / "postgresql.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
    (datadir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    (datadir / "pg_ident.conf").write_text("")
    if os.geteuid() == 0:
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.chown(datadir / name, "postgres", "postgres")


def _start(datadir: Path) -> None:
    cmd = [str(_bindir() / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(datadir)]
    done = _run([*cmd, "-l", str(datadir / "server.log")])
    if done.returncode:
        log = (
            (datadir / "server.log").read_text()[-2000:]
            if (datadir / "server.log").exists()
            else ""
        )
        sys.exit(f"replica: pg_ctl start failed: {done.stdout}{done.stderr}\n{log}")


def _running(datadir: Path) -> bool:
    return _run([str(_bindir() / "pg_ctl"), "status", "-D", str(datadir)]).returncode == 0


def _stop(datadir: Path) -> None:
    if _running(datadir):
        _run([str(_bindir() / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(datadir)])


def ensure(*, primary_url: str, port: int, datadir: Path, allow: bool) -> None:
    primary = urlparse(primary_url)
    user = primary.username or "postgres"
    state = _streaming(port, user, datadir)
    if state:
        return
    if state is None and (datadir / "standby.signal").exists():
        if not _running(datadir):
            _log(f"starting the replica in {datadir} on port {port}")
            _start(datadir)
        if _wait_streaming(port, user, datadir):
            return
    elif state is False and _wait_streaming(port, user, datadir):
        return  # just started by another caller: it connects to the primary in a moment
    _log(f"making a replica of {primary.hostname}:{primary.port or 5432} in {datadir}")
    _stop(datadir)
    _base_backup(primary, user, datadir, port, allow)
    _start(datadir)
    if not _wait_streaming(port, user, datadir):
        sys.exit(f"replica: started but not streaming; see {datadir / 'server.log'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--primary",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="The primary's URL (default: $DATABASE_URL); its user must be allowed REPLICATION.",
    )
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--dir", help="Data directory (default: /tmp/appserver-replica-PORT).")
    parser.add_argument(
        "--database", help="Database named in the printed URL (default: the primary's)."
    )
    parser.add_argument("--allow-replication", action="store_true", help=_allow_replication.__doc__)
    parser.add_argument("--stop", action="store_true", help="Stop the replica (its files stay).")
    args = parser.parse_args(argv)
    datadir = Path(args.dir or f"/tmp/appserver-replica-{args.port}").absolute()  # noqa: S108
    primary = urlparse(args.primary)
    if primary.scheme not in {"postgres", "postgresql", "pgsql"}:
        sys.exit("replica: --primary must be a postgres:// URL.")
    lock_path = datadir.with_name(datadir.name + ".lock")
    with open(lock_path, "a") as lock:
        with contextlib.suppress(OSError):
            os.chmod(lock_path, 0o666)  # noqa: S103 - any user may run it; a lock holds no data
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
        if args.stop:
            _stop(datadir)
            return 0
        ensure(
            primary_url=args.primary, port=args.port, datadir=datadir, allow=args.allow_replication
        )
    user = primary.username or "postgres"
    auth = f"{user}:{primary.password}" if primary.password else user
    name = args.database or primary.path.lstrip("/") or "postgres"
    print(f"postgres://{auth}@127.0.0.1:{args.port}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
