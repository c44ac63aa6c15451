import pytest


@pytest.fixture
def no_heartbeats():
    """Start from an empty worker list (a killed worker's key lingers for up to three intervals)."""
    from inference import heartbeat

    client = heartbeat.redis_client()
    for key in client.scan_iter(match=heartbeat.KEY_PREFIX + "*"):
        client.delete(key)
    yield client
