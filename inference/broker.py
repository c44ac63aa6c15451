"""What the sweeper and ``/readyz`` need to know about the broker, asked with short timeouts.

Celery's Redis transport keeps queued and unacknowledged messages in the Redis server. When that server
restarts without persistence (or its data is flushed), every message it held is gone while the cases stay
``submitted``. A marker key written next to the messages tells the two apart: it disappears together with the
messages, so a sweep that finds it missing knows that everything published before the server's data began is
lost and must be published again. With persistence (the embedded Redis writes an append-only file under
``var/``) the marker survives with the messages and nothing is published twice.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

EPOCH_KEY = "teleder:broker-epoch"


def redis_options(timeout_s: float) -> dict[str, Any]:
    """Socket timeouts, and no retries: redis-py otherwise retries a refused connection three times with
    back-off (about 4 s), which is what made /readyz slow while the broker was down."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "retry": Retry(NoBackoff(), 0)}


def broker_redis(*, timeout_s: float = 2.0) -> Any | None:
    """A Redis client on the broker, or None when the broker is not Redis."""
    import redis

    url = settings.CELERY_BROKER_URL
    if url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"), **redis_options(timeout_s))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return redis.Redis.from_url(url, **redis_options(timeout_s))
    return None


def data_since(*, now: datetime) -> datetime | None:
    """Since when the broker holds its current data: messages published before then are gone. None when the
    broker is not Redis.

    The time is kept in a marker key next to the messages. When the key is missing (a restart without
    persistence, a flush, a first start) it is set to the server's start time (``now`` minus its uptime), so
    every sweep after a loss sees the same time and each lost case is published again exactly once (its new
    ``enqueued_at`` is later). Raises the client's connection error when the broker is down.
    """
    client = broker_redis()
    if client is None:
        return None
    raw = client.get(EPOCH_KEY)
    if raw is None:
        uptime_s = int(client.info("server").get("uptime_in_seconds", 0))
        client.set(EPOCH_KEY, (now - timedelta(seconds=uptime_s)).isoformat(), nx=True)
        raw = client.get(EPOCH_KEY)
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
