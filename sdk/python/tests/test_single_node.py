"""What needs a node started with particular flags: RateLimited (--rate-limit), Compacted (a
short --watch-history-entries), and HTTPS (--tls-cert, --tls-key)."""

from __future__ import annotations

import shutil

import pytest

from cairn_client import Client, Compacted, RateLimited, Unavailable
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


@pytest.mark.cluster
def test_a_watch_from_before_the_history_is_compacted():
    node = Cluster(size=1, extra_args=["--watch-history-entries", "5"], name="compacted")
    try:
        node.start()
        kv = Client([node.url(1)], token=node.admin_token, namespace="sdk-cp")
        first = kv.put("w/0", 0).version
        for i in range(1, 20):
            kv.put(f"w/{i}", i)
        last = kv.put("w/end", 0).version
        watch = kv.watch("w/", after=first)
        with pytest.raises(Compacted) as info:
            next(watch)
        e = info.value
        assert (e.status, e.code) == (410, "compacted")
        assert e.compacted_index is not None and int(e.compacted_index) > int(first)
        assert e.current_index is not None and int(e.current_index) >= int(last)
        assert watch.closed
        # From inside the history, a watch works: the last entry is delivered.
        with kv.watch("w/", after=str(int(last) - 1)) as w:
            ev = next(w)
        assert ev.index == last and ev.changes[0].key == "w/end"
    finally:
        node.stop()


@pytest.mark.cluster
def test_https_with_a_private_ca():
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificate")
    node = Cluster(size=1, name="tls", tls=True)
    try:
        node.start()
        assert node.url(1).startswith("https://")
        kv = Client([node.url(1)], token=node.admin_token, namespace="sdk-tls", ssl_context=node.ssl_context)
        put = kv.put("k", {"secure": True})
        assert kv.get("k") == put
        with kv.watch("", after=str(int(put.version) - 1)) as w:
            assert next(w).index == put.version
        # Without the CA the handshake fails before any byte of the request: Unavailable.
        with pytest.raises(Unavailable) as info:
            Client([node.url(1)], token=node.admin_token, retry=False).increment("n")
        assert info.value.code == "connection_failed"
    finally:
        node.stop()
