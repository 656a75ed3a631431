"""Django's Redis cache backend, with one redis-py client per connection pool, Sentinel and
Redis Cluster locations, and the few atomic operations the credentials path needs.

Django's RedisCacheClient builds a new ``redis.Redis`` object for every cache operation; since
redis-py 5 each construction registers ~170 response callbacks, which costs more CPU than the
Redis round trip itself (about 0.35 ms per operation here). A ``redis.Redis`` object is
thread-safe (each command borrows a connection from the pool), so one per pool is enough.

Locations (``REDIS_URL``; docs/production-alibaba.md says which deployments each one fits):

- ``redis://`` / ``rediss://`` / ``unix://``: one endpoint (a single Redis, ApsaraDB / Tair
  standard, or the proxy endpoint of a cluster or read/write splitting instance).
- ``redis+sentinel://[:password@]host:26379[,host:26379...]/<master name>[/<db>]``: the master
  that the Sentinels name, followed across failovers (``?sentinel_password=`` when the
  Sentinels have a password of their own).
- ``redis+cluster://[:password@]host:6379[,host:6379...]``: a Redis Cluster without a proxy
  (redis-py's RedisCluster; database 0 only).

Scripts go through redis-py's Script (EVALSHA, EVAL when the server lost it), which every one
of those clients routes by the script's keys; each script takes its keys in KEYS, all in one
hash slot, as cluster proxies require.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

SENTINEL_SCHEMES = ("redis+sentinel",)


def user_tag(user_pk: int) -> str:
    """The hash tag every key of one user carries, whichever app writes it: in a Redis Cluster
    (or behind a cluster proxy) one user's keys share a slot, so one command may name several."""
    return f"{{u{user_pk}}}"


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def _hosts(netloc: str, default_port: int) -> tuple[dict, list[tuple[str, int]]]:
    """({"username": ..., "password": ...}, [(host, port), ...]) of a netloc that may list
    several hosts (a username only for Redis 6 ACL accounts)."""
    credentials: dict = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        username, _, password = userinfo.partition(":")
        if username:
            credentials["username"] = unquote(username)
        if password:
            credentials["password"] = unquote(password)
    hosts = []
    for item in filter(None, netloc.split(",")):
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        hosts.append((host or item, int(port) if port else default_port))
    return credentials, hosts


def sentinel_pool(url: str, options: dict):
    """A connection pool to the master the Sentinels of `url` name."""
    from redis.sentinel import Sentinel, SentinelConnectionPool

    parts = urlsplit(url)
    credentials, sentinels = _hosts(parts.netloc, 26379)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"{parts.scheme}:// needs the master's name: .../<master name>[/<db>]")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    timeouts = {
        k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")
    }
    sentinel_kwargs = dict(timeouts)
    if query.get("sentinel_password"):
        sentinel_kwargs["password"] = query["sentinel_password"]
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    pool_options = {**options, **credentials, "db": int(path[1]) if len(path) > 1 else 0}
    return SentinelConnectionPool(path[0], manager, **pool_options)


def cluster_client(url: str, options: dict):
    """redis-py's RedisCluster for `url`'s startup nodes."""
    from redis.cluster import ClusterNode, RedisCluster

    parts = urlsplit(url)
    credentials, nodes = _hosts(parts.netloc, 6379)
    kwargs = {**{k: v for k, v in options.items() if k != "parser_class"}, **credentials}
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        ssl=parts.scheme.startswith("rediss"),
        **kwargs,
    )


class _ReusingRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._cluster = None

    def _get_connection_pool(self, write):
        index = self._get_connection_pool_index(write)
        if index not in self._pools:
            url = self._servers[index]
            if urlsplit(url).scheme in SENTINEL_SCHEMES:
                self._pools[index] = sentinel_pool(url, self._pool_options)
            else:
                self._pools[index] = self._pool_class.from_url(url, **self._pool_options)
        return self._pools[index]

    def get_client(self, key=None, *, write=False):
        if urlsplit(self._servers[0]).scheme in CLUSTER_SCHEMES:
            if self._cluster is None:
                self._cluster = cluster_client(self._servers[0], self._pool_options)
            return self._cluster  # thread-safe; routes each command by its key's slot
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client

    def set_many(self, data, timeout):
        # Django pipelines one MSET and an EXPIRE per key; a cluster refuses MSET in a pipeline
        # (and across slots). A SET with its expiry per key works on every deployment, and no
        # key is ever without its expiry.
        pipeline = self.get_client(None, write=True).pipeline(transaction=False)
        for key, value in data.items():
            if timeout == 0:  # Django's "expire at once"
                pipeline.delete(key)
            else:
                pipeline.set(key, self._serializer.dumps(value), ex=timeout)
        pipeline.execute()


# KEYS[1]: the window's counter, KEYS[2] (optional): a key to read. ARGV[1]: window length in
# ms, ARGV[2]: hits to add. Returns {hits, ms left in the window, value of KEYS[2]} (a missing
# key reads as false -> None). Keys only as KEYS[n] literals: Alibaba's cluster proxies refuse
# scripts that compute a key.
_INCR_WINDOW = """
local hits = redis.call('INCRBY', KEYS[1], ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
if #KEYS > 1 then
  return {hits, left, redis.call('GET', KEYS[2])}
end
return {hits, left}
"""

# KEYS[1]: a sorted set of request times (ms). ARGV[1]: now (ms), ARGV[2]: window (ms),
# ARGV[3]: requests allowed in any window, ARGV[4]: this request's member (unique). Drops the
# times that left the window, then logs this request only if the window has room. Returns
# {1, 0} when logged, else {0, ms until the oldest logged request leaves the window}.
_SLIDING_LOG_HIT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest == 0 then return {0, window} end
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
"""

# A GET sent as a script: read/write splitting proxies send scripts to the master, whereas a
# GET may be answered by a read replica that has not yet received the latest write.
_GET_FROM_PRIMARY = "return redis.call('GET', KEYS[1])"


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _ReusingRedisCacheClient
        self._scripts: dict[tuple[int, str], object] = {}

    def _script(self, client, source: str):
        script = self._scripts.get((id(client), source))
        if script is None:
            script = self._scripts.setdefault((id(client), source), client.register_script(source))
        return script

    def incr_window(
        self, key: str, window_seconds: int, *, amount: int = 1, get_key: str | None = None
    ) -> tuple[int, float, object]:
        """Count `amount` hits in a fixed window that starts at the first hit, and read
        `get_key` (which must share `key`'s hash slot), in one round trip.

        Returns (hits so far in the window, seconds until it ends, the value under `get_key` or
        None). Rate limiters on hot paths use this instead of a get-then-set of a request log
        (two round trips and a pickled list). One Lua script, so it is atomic (the window's key
        always gets its expiry) and costs Redis and the client one command.
        """
        # make_key, not make_and_validate_key: the callers' keys are fixed formats, and the
        # memcached-compatibility check walks every character in Python.
        keys = [self.make_key(key)] + ([self.make_key(get_key)] if get_key is not None else [])
        client = self._cache.get_client(keys[0], write=True)
        hits, ms_left, *raw = self._script(client, _INCR_WINDOW)(
            keys=keys, args=[window_seconds * 1000, amount], client=client
        )
        value = self._cache._serializer.loads(raw[0]) if raw and raw[0] is not None else None
        return int(hits), int(ms_left) / 1000, value

    def sliding_log_hit(
        self, key: str, *, window_seconds: float, limit: int, now: float
    ) -> tuple[bool, float]:
        """Log a request at `now` (seconds) unless `limit` requests are already logged within
        the last `window_seconds`: DRF's SimpleRateThrottle rule, decided by Redis in one atomic
        round trip, so it holds exactly however many workers and instances count at once (DRF
        reads the log and writes it back, and concurrent requests overwrite each other's).

        Returns (logged, seconds until the window has room again)."""
        full_key = self.make_key(key)
        client = self._cache.get_client(full_key, write=True)
        logged, ms_left = self._script(client, _SLIDING_LOG_HIT)(
            keys=[full_key],
            args=[int(now * 1000), int(window_seconds * 1000), limit, os.urandom(8).hex()],
            client=client,
        )
        return bool(logged), int(ms_left) / 1000

    def get_from_primary(self, key: str, default=None):
        """cache.get, answered by the primary even behind a read/write splitting proxy."""
        full_key = self.make_key(key)
        client = self._cache.get_client(full_key, write=True)
        raw = self._script(client, _GET_FROM_PRIMARY)(keys=[full_key], client=client)
        return default if raw is None else self._cache._serializer.loads(raw)

    def lock(self, key: str, *, timeout: float):
        """redis-py's Lock on `key` (expires after `timeout` seconds; released only by the
        token that acquired it)."""
        full_key = self.make_key(key)
        return self._cache.get_client(full_key, write=True).lock(full_key, timeout=timeout)
