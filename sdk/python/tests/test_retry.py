"""The retry rule, read-your-writes and error mapping, against scripted fake servers on loopback.
Each fake server counts and records the requests it read, so "not retried" is checked by the
count on the next endpoint, not by timing."""

from __future__ import annotations

from typing import Callable, Iterator, List

import pytest

from cairn_client import (
    CairnError,
    Client,
    Compacted,
    Conflict,
    NotFound,
    RateLimited,
    Retry,
    Unavailable,
    UnknownOutcome,
)
from cluster import free_port
from fakeserver import Answer, FakeServer, Hangup, Reset, Stall, Stream, error, item

# No pause between attempts: these tests are about which attempts happen, not when.
FAST = Retry(backoff=0.0)


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeServer]]:
    started: List[FakeServer] = []

    def make(script) -> FakeServer:
        s = FakeServer(script).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def client(*urls: str, **kw) -> Client:
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 5.0)
    return Client(list(urls), token="t", namespace="ns", **kw)


CALLS = {
    "get": lambda c: c.get("k"),
    "put": lambda c: c.put("k", 1),
    "conditional put": lambda c: c.put("k", 2, if_version="5"),
    "delete": lambda c: c.delete("k"),
    "increment": lambda c: c.increment("k"),
    "batch": lambda c: c.batch([{"op": "set", "key": "k", "value": 1}]),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_504_is_unknown_outcome_and_never_retried(serve, call):
    a = serve(error(504, "unknown_outcome", "commit not confirmed"))
    b = serve(item("k", 1, "9"))
    with pytest.raises(UnknownOutcome) as info:
        CALLS[call](client(a.url, b.url))
    assert (info.value.status, info.value.code) == (504, "unknown_outcome")
    assert (a.count, b.count) == (1, 0)


def test_429_is_rate_limited_with_retry_after_and_not_retried(serve):
    a = serve(error(429, "rate_limited", "slow down", headers={"Retry-After": "3"}))
    b = serve(item("k", 1, "9"))
    with pytest.raises(RateLimited) as info:
        client(a.url, b.url).get("k")
    e = info.value
    assert (e.status, e.code, e.retry_after, e.retryAfter) == (429, "rate_limited", 3, 3)
    assert e.request_id == a.requests[0].headers["x-request-id"]
    assert (a.count, b.count) == (1, 0)


@pytest.mark.parametrize("call", ["conditional put", "increment"])
def test_503_no_leader_moves_to_the_next_endpoint(serve, call):
    a = serve(error(503, "no_leader", "election", headers={"Retry-After": "1"}))
    b = serve(item("k", 7, "12"))
    result = CALLS[call](client(a.url, b.url))
    assert result.version == "12"
    assert (a.count, b.count) == (1, 1)
    # The very same request went to B.
    assert a.requests[0].body == b.requests[0].body
    assert a.requests[0].headers["x-request-id"] == b.requests[0].headers["x-request-id"]
    # And the client stays on B for the next call.
    c = client(a.url, b.url)
    CALLS[call](c)
    CALLS[call](c)
    assert a.count == 2


def test_503_starting_moves_an_increment_on(serve):
    # A node still opening its data answers everything 503 `starting`: nothing was applied.
    a = serve(error(503, "starting", "opening its data", headers={"Retry-After": "1"}))
    b = serve(item("k", 1, "3"))
    assert client(a.url, b.url).increment("k").value == 1
    assert (a.count, b.count) == (1, 1)


def test_502_leader_unreachable_moves_an_increment_on(serve):
    a = serve(error(502, "leader_unreachable", "tls refused"))
    b = serve(item("k", 1, "3"))
    assert client(a.url, b.url).increment("k").value == 1
    assert (a.count, b.count) == (1, 1)


def test_503_of_unknown_meaning_is_not_retried_for_an_increment(serve):
    # Not one of the codes that prove nothing was applied (a proxy's 503, say).
    a = serve(Answer(503, b"<html>busy</html>"))
    b = serve(item("k", 1, "3"))
    with pytest.raises(UnknownOutcome):
        client(a.url, b.url).increment("k")
    assert (a.count, b.count) == (1, 0)
    # A read may go on after the same answer.
    assert client(a.url, b.url).get("k").value == 1


def test_increment_whose_connection_closes_after_the_request_is_unknown_and_not_retried(serve):
    a = serve(Hangup())
    b = serve(item("k", 1, "3"))
    with pytest.raises(UnknownOutcome) as info:
        client(a.url, b.url).increment("k")
    assert info.value.status is None
    # A read the request (so it could have applied it); B never saw it.
    assert (a.count, b.count) == (1, 0)
    assert a.requests[0].path == "/kv/items/k/increment"


def test_a_reset_after_the_request_is_unknown_for_an_increment_and_retried_for_a_get(serve):
    a = serve(Reset())
    b = serve(item("k", 1, "3"))
    with pytest.raises(UnknownOutcome) as info:
        client(a.url, b.url).increment("k")
    assert info.value.code == "connection_broken"
    assert (a.count, b.count) == (1, 0)
    assert client(a.url, b.url).get("k").version == "3"
    assert (a.count, b.count) == (2, 1)


def test_get_whose_connection_closes_is_retried_on_the_next_endpoint(serve):
    a = serve(Hangup())
    b = serve(item("k", "from b", "3"))
    got = client(a.url, b.url).get("k")
    assert got is not None and got.value == "from b"
    assert (a.count, b.count) == (1, 1)


def test_put_whose_connection_closes_is_retried_and_a_conflict_then_is_unknown_outcome(serve):
    a = serve(Hangup())
    b = serve(error(409, "version_mismatch", "key is at 6"))
    with pytest.raises(UnknownOutcome) as info:
        client(a.url, b.url).put("k", 2, if_version="5")
    # The first attempt may have been applied: the conflict may be this call's own write.
    assert info.value.prior_unknown is True
    assert info.value.code == "version_mismatch" and info.value.status == 409
    assert isinstance(info.value.__cause__, Conflict)
    assert (a.count, b.count) == (1, 1)


def test_put_retried_after_a_broken_connection_never_ends_as_unavailable(serve):
    a = serve(Hangup())
    b = serve(error(503, "no_leader"))
    with pytest.raises(UnknownOutcome):
        client(a.url, b.url, retry=Retry(attempts=2, backoff=0)).put("k", 1)
    assert (a.count, b.count) == (1, 1)


def test_connection_refused_moves_an_increment_to_the_next_endpoint(serve):
    dead = f"http://127.0.0.1:{free_port()}"
    b = serve(item("k", 1, "3"))
    assert client(dead, b.url).increment("k").version == "3"
    assert b.count == 1


def test_every_endpoint_refusing_is_unavailable(serve):
    dead1, dead2 = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    with pytest.raises(Unavailable) as info:
        client(dead1, dead2).increment("k")
    assert info.value.status is None
    assert len(info.value.attempts) == 4  # twice the number of endpoints


def test_503_everywhere_is_unavailable_after_twice_the_endpoints(serve):
    a = serve(error(503, "no_leader"))
    b = serve(error(503, "no_leader"))
    with pytest.raises(Unavailable) as info:
        client(a.url, b.url).increment("k")
    assert (info.value.status, info.value.code) == (503, "no_leader")
    assert (a.count, b.count) == (2, 2)


def test_retry_off_is_one_attempt(serve):
    a = serve(error(503, "no_leader"))
    b = serve(item("k", 1, "3"))
    with pytest.raises(Unavailable):
        client(a.url, b.url, retry=False).get("k")
    assert (a.count, b.count) == (1, 0)


def test_a_read_that_times_out_moves_on_and_a_write_is_unknown(serve):
    a = serve(Stall())
    b = serve(item("k", 1, "3"))
    assert client(a.url, b.url, timeout=0.3).get("k").version == "3"
    with pytest.raises(UnknownOutcome) as info:
        client(a.url, b.url, timeout=0.3).increment("k")
    assert info.value.code == "timeout"
    assert b.count == 1  # the get only


def test_min_version_is_sent_after_a_write_that_returned_version_42(serve):
    def script(req):
        if req.method == "PUT":
            return item("k", 1, "42", headers={"X-Cairn-Applied-Index": "42"})
        return item("k", 1, "42", headers={"X-Cairn-Index": "57"})

    s = serve(script)
    c = client(s.url)
    c.get("k")
    assert "minVersion" not in s.requests[0].query  # nothing seen yet
    s.requests.clear()
    c2 = client(s.url)
    c2.put("k", 1)
    c2.get("k")
    assert s.requests[1].query["minVersion"] == "42"
    # The read's X-Cairn-Index raises it further.
    c2.get("k")
    assert s.requests[2].query["minVersion"] == "57"
    # Off: never sent.
    s.requests.clear()
    c3 = client(s.url, read_your_writes=False)
    c3.put("k", 1)
    c3.get("k")
    assert "minVersion" not in s.requests[1].query


def test_a_delete_raises_the_index_by_its_applied_index(serve):
    def script(req):
        if req.method == "DELETE":
            return Answer(200, {"data": {"key": "k", "deleted": True}}, {"X-Cairn-Applied-Index": "77"})
        return item("k", 1, "5")

    s = serve(script)
    c = client(s.url)
    assert c.delete("k") is True
    c.get("k")
    assert s.requests[1].query["minVersion"] == "77"


def test_every_scan_page_carries_min_version(serve):
    # Read-your-writes covers scans: each page asks for at least the client's index.
    def script(req):
        if req.method == "PUT":
            return item("p/1", 1, "40")
        if req.query.get("cursor"):
            return Answer(200, {"data": {"items": [{"key": "p/2", "value": 2, "version": "41", "expiresAt": None}], "nextCursor": None}}, {"X-Cairn-Index": "41"})
        return Answer(200, {"data": {"items": [{"key": "p/1", "value": 1, "version": "40", "expiresAt": None}], "nextCursor": "cDox"}}, {"X-Cairn-Index": "40"})

    s = serve(script)
    c = client(s.url)
    c.put("p/1", 1)
    assert [i.key for i in c.scan("p/", limit=1)] == ["p/1", "p/2"]
    scans = [r for r in s.requests if r.path == "/kv/items"]
    assert [r.query.get("minVersion") for r in scans] == ["40", "40"]
    assert all("consistency" not in r.query for r in scans)


def test_500_on_a_write_is_unknown_outcome(serve):
    a = serve(error(500, "storage_error", "disk"))
    b = serve(item("k", 1, "3"))
    for call in ("put", "increment", "delete"):
        with pytest.raises(UnknownOutcome) as info:
            CALLS[call](client(a.url, b.url))
        assert info.value.status == 500
    assert b.count == 0
    # On a read it is an error, but not an unknown outcome: nothing was written.
    with pytest.raises(CairnError) as read_info:
        client(a.url, b.url).get("k")
    assert not isinstance(read_info.value, UnknownOutcome)


def test_409_with_current_version_is_a_conflict_carrying_it(serve):
    s = serve(error(409, "version_mismatch", "key is at 17", currentVersion="17"))
    with pytest.raises(Conflict) as info:
        client(s.url).put("k", 1, if_version="5")
    e = info.value
    assert (e.status, e.code, e.current_version, e.currentVersion) == (409, "version_mismatch", "17", "17")
    assert e.request_id == s.requests[0].headers["x-request-id"]


def test_absent_keys_read_as_none_and_delete_false_but_other_404s_raise(serve):
    s = serve(error(404, "not_found", "no such key"))
    c = client(s.url)
    assert c.get("k") is None
    assert c.delete("k") is False
    with pytest.raises(NotFound):
        c.request("GET", "/kv/items/k")
    r = serve(error(404, "no_route", "no such path"))
    with pytest.raises(NotFound):
        client(r.url).get("k")


def test_requests_carry_credentials_namespace_and_encoded_keys(serve):
    s = serve(item("a/b c", 1, "3"))
    client(s.url).put("a/b c?#%é", {"x": 1}, ttl=60, if_absent=True)
    req = s.requests[0]
    assert req.path == "/kv/items/a%2Fb%20c%3F%23%25%C3%A9"
    assert req.headers["authorization"] == "Bearer t"
    assert req.headers["x-cairn-namespace"] == "ns"
    assert req.json() == {"value": {"x": 1}, "ttlSeconds": 60, "ifNotExists": True}


def test_if_value_none_is_a_condition(serve):
    s = serve(item("k", 1, "3"))
    client(s.url).put("k", 1, if_value=None)
    assert s.requests[0].json() == {"value": 1, "ifValue": None}


def test_watch_resumes_on_the_next_endpoint_with_last_event_id(serve):
    a = serve(
        Stream(
            [
                "id: 5",
                "event: progress",
                'data: {"index":"5"}',
                "",
                ": keep-alive",
                "id: 6",
                "event: change",
                'data: {"index":"6","changes":[{"op":"set","key":"w/a","version":"6","value":1,"expiresAt":null}]}',
                "",
                # A half-sent event: the stream breaks before its blank line, so it is not
                # delivered and the resume point stays at 6.
                "id: 7",
                "event: change",
                'data: {"index":"7","changes":[]}',
            ]
        )
    )
    b = serve(
        Stream(
            [
                "id: 7",
                "event: change",
                'data: {"index":"7","changes":[{"op":"delete","key":"w/a","version":"7","expiresAt":null}]}',
                "",
            ]
        )
    )
    with client(a.url, b.url).watch("w/", after="4") as w:
        first, second = next(w), next(w)
    assert [first.index, second.index] == ["6", "7"]
    assert second.changes[0].to_dict() == {"op": "delete", "key": "w/a", "version": "7", "expiresAt": None}
    assert a.requests[0].headers["last-event-id"] == "4"
    assert a.requests[0].query == {"prefix": "w/", "values": "true"}
    assert b.requests[0].headers["last-event-id"] == "6"


def test_watch_410_is_compacted_with_its_indexes(serve):
    s = serve(error(410, "compacted", "too old", compactedIndex="100", currentIndex="250"))
    w = client(s.url).watch("", after="3")
    with pytest.raises(Compacted) as info:
        next(w)
    assert (info.value.compacted_index, info.value.current_index) == ("100", "250")


def test_watch_of_an_unreachable_cluster_ends_unavailable(serve):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable):
        next(client(dead).watch(""))


def test_watch_close_from_another_thread_ends_the_iteration(serve):
    import threading

    s = serve(Stall())
    w = client(s.url).watch("")
    # close() once the watch's request has reached the server, so close interrupts a blocked read.
    def closer():
        import time

        deadline = time.monotonic() + 10
        while s.count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        w.close()

    t = threading.Thread(target=closer)
    t.start()
    with pytest.raises(StopIteration):
        next(w)
    t.join(10)
    assert w.closed


def test_a_keep_alive_connection_the_server_closed_is_not_an_ambiguous_attempt(serve):
    s = serve(Answer(200, {"data": {"key": "k", "value": 1, "version": "3", "expiresAt": None}}, close=True))
    c = client(s.url)
    assert c.get("k").version == "3"
    # The pooled connection is closed by now (or about to be): the put goes out once, on a new
    # connection, and nothing about it is uncertain.
    assert c.put("k", 1).version == "3"
    assert c.get("k").version == "3"
    assert s.count == 3


def test_a_callers_request_id_is_kept_on_every_attempt(serve):
    a = serve(error(503, "no_leader"))
    b = serve(error(404, "not_found"))
    with pytest.raises(NotFound) as info:
        client(a.url, b.url).request("GET", "/kv/items/k", headers={"x-request-id": "my-id-1"})
    assert [r.headers["x-request-id"] for r in a.requests + b.requests] == ["my-id-1", "my-id-1"]
    assert info.value.request_id == "my-id-1"
