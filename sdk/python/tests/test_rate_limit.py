"""RateLimited from a real node started with --rate-limit."""

from __future__ import annotations

import pytest

from cairn_client import Client, RateLimited
from cluster import Cluster


@pytest.mark.cluster
def test_a_burst_over_the_rate_limit_is_rate_limited_with_retry_after():
    node = Cluster(size=1, extra_args=["--rate-limit", "5"], name="ratelimit")
    try:
        node.start()
        kv = Client([node.url(1)], token=node.admin_token, namespace="sdk-rl")
        limited = []
        served = 0
        # The bucket holds 5 and refills at 5/s: 20 back-to-back gets cannot all fit, however
        # slow this machine is (each would need 200 ms to let the bucket refill).
        for _ in range(20):
            try:
                kv.get("k")
                served += 1
            except RateLimited as e:
                limited.append(e)
        assert limited, f"20 gets against --rate-limit 5 were all served ({served})"
        e = limited[0]
        assert (e.status, e.code) == (429, "rate_limited")
        assert e.retry_after is not None and e.retry_after > 0
        assert served >= 1
    finally:
        node.stop()
