"""Leases, locks and elections against a live 3-node cluster: keys go with their lease, a lock is
exclusive and hands off in order, a stale fencing token is refused, and an election's leadership
passes to the waiting candidate on resign. Every wait has a deadline; nothing asserts on timing."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable, Iterator, List, Optional

import pytest

from cairn_client import Client, Conflict, Lease, Lock, NotFound
from cluster import Cluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def env() -> Iterator[Any]:
    cluster = Cluster(size=3, name="coord")
    try:
        cluster.start()
        cluster.leader()
        kv = Client(cluster.urls(), token=cluster.admin_token, namespace="sdk-" + secrets.token_hex(4))
        yield cluster, kv
        kv.close()
    finally:
        cluster.stop()


def wait_until(what: str, check: Callable[[], bool], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline} s waiting for {what}")


class Background:
    """Runs `fn` in a thread; `result(deadline)` returns its value or raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                self.error = exc
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def result(self, deadline: float = 30.0) -> Any:
        assert self.done.wait(deadline), f"no result within {deadline} s"
        if self.error is not None:
            raise self.error
        return self.value


def waiting(kv: Client, name: str) -> int:
    return int(kv.request("GET", f"/locks/{name}").body["data"]["waiting"])


def test_keys_attached_to_a_lease_vanish_when_it_is_revoked(env):
    cluster, kv = env
    lease = kv.grant_lease(30)
    assert isinstance(lease, Lease) and lease.id.isdigit()
    kv.put("svc/a", {"addr": "10.0.0.5"}, lease=lease)
    kv.put("svc/b", 1, lease=lease.id)
    kv.put("svc/keep", 2)
    assert sorted(lease.info()["keys"]) == ["svc/a", "svc/b"]
    lease.keep_alive()
    assert lease.revoke() == 2
    assert kv.get("svc/a") is None and kv.get("svc/b") is None
    assert kv.get("svc/keep").value == 2
    assert lease.info() is None
    assert lease.lost.is_set()
    assert lease.revoke() == 0, "a second revoke is done, not an error"
    with pytest.raises(NotFound) as info:
        lease.keep_alive()
    assert (info.value.status, info.value.code) == (404, "lease_not_found")


def test_a_lease_as_a_context_manager_is_kept_alive_and_revoked_on_exit(env):
    cluster, kv = env
    with kv.lease(3) as lease:
        kv.put("ctx/k", 1, lease=lease)
        # Longer than the TTL: only the background keepalive keeps the key.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert not lease.lost.is_set()
            time.sleep(0.25)
        assert kv.get("ctx/k") is not None
    assert lease.lost.is_set()
    assert kv.get("ctx/k") is None


def test_the_background_keepalive_reports_the_lease_lost(env):
    cluster, kv = env
    lease = kv.grant_lease(3).start_keep_alive(0.1)
    try:
        kv.request("DELETE", f"/leases/{lease.id}")
        assert lease.lost.wait(15), "the keepalive never found the lease gone"
        assert isinstance(lease.last_keep_alive_error, NotFound)
        assert lease.last_keep_alive_error.code == "lease_not_found"
    finally:
        lease.stop_keep_alive()


def test_a_lock_is_exclusive_hands_off_in_order_and_fences_a_stale_token(env):
    cluster, kv = env
    name = "job-" + secrets.token_hex(3)
    first = kv.lock(name, ttl=10)
    assert isinstance(first, Lock) and first.token.isdigit()

    with pytest.raises(Conflict) as info:
        kv.lock(name, ttl=10, wait=0)
    assert (info.value.status, info.value.code) == (409, "lock_held")

    kv.put(name + "/out", "first", if_fence=first)

    order: List[str] = []
    second_bg = Background(lambda: (kv.lock(name, ttl=10, wait=30), order.append("second"))[0])
    wait_until("the second waiter to queue", lambda: waiting(kv, name) >= 1)
    third_bg = Background(lambda: (kv.lock(name, ttl=10, wait=30), order.append("third"))[0])
    wait_until("the third waiter to queue", lambda: waiting(kv, name) >= 2)

    first.release()
    second = second_bg.result()
    assert order == ["second"], "the waiter that queued first holds first"
    assert int(second.token) > int(first.token)
    assert kv.request("GET", f"/locks/{name}").body["data"]["holder"]["token"] == second.token

    with pytest.raises(Conflict) as info:
        kv.put(name + "/out", "stale", if_fence=(first.name, first.token))
    assert info.value.code == "fenced"
    assert kv.get(name + "/out").value == "first"

    second.release()
    third = third_bg.result()
    assert order == ["second", "third"]
    kv.put(name + "/out", "third", if_fence=third.fence)
    third.release()
    third.release()  # already released: done, not an error
    assert kv.request("GET", f"/locks/{name}").body["data"]["holder"] is None


def test_a_lock_as_a_context_manager(env):
    cluster, kv = env
    name = "ctx-" + secrets.token_hex(3)
    with kv.lock(name, ttl=10, wait=30) as lock:
        assert kv.request("GET", f"/locks/{name}").body["data"]["holder"]["token"] == lock.token
        kv.put(name + "/x", 1, if_fence=lock)
    assert kv.request("GET", f"/locks/{name}").body["data"]["holder"] is None
    assert lock.lease.lost.is_set(), "the lease the lock granted itself is revoked"


def test_an_election_leads_observes_and_hands_over_on_resign(env):
    cluster, kv = env
    name = "el-" + secrets.token_hex(3)
    assert kv.leader(name) is None
    first_lease = kv.grant_lease(60)
    second_lease = kv.grant_lease(60)
    first = kv.elect(name, "node-a", lease=first_lease)
    assert first.token.isdigit()
    assert kv.leader(name).value == "node-a"

    with pytest.raises(Conflict) as info:
        kv.elect(name, "node-x", ttl=10, wait=0)
    assert info.value.code == "not_elected"

    events: List[Any] = []
    got = threading.Condition()
    obs = kv.observe(name)

    def follow() -> None:
        for ev in obs:
            with got:
                events.append(ev)
                got.notify_all()

    threading.Thread(target=follow, daemon=True).start()

    def next_event(pred: Callable[[Any], bool], deadline: float = 15.0) -> Any:
        end = time.monotonic() + deadline
        with got:
            while True:
                for i, ev in enumerate(events):
                    if pred(ev):
                        del events[: i + 1]
                        return ev
                left = end - time.monotonic()
                assert left > 0, f"no matching observe event within {deadline} s (saw {events})"
                got.wait(left)

    try:
        assert next_event(lambda e: e is not None).token == first.token
        assert first.proclaim("node-a2").value == "node-a2"
        assert next_event(lambda e: e is not None and e.value == "node-a2").token == first.token

        # The leases are not renewed in the background, so the only entry after `baseline` is
        # the second candidate's campaign: once the leader applied past it, it is queued.
        leader_client = Client([cluster.url(cluster.leader())], token=cluster.admin_token)
        applied = lambda: int(leader_client.request("GET", "/cluster/status").body["data"]["appliedIndex"])  # noqa: E731
        baseline = applied()
        second_bg = Background(lambda: kv.elect(name, "node-b", lease=second_lease, wait=30))
        wait_until("the second candidate to queue", lambda: applied() > baseline)
        resigned = kv.request("DELETE", f"/elections/{name}/resign", query={"token": first.token})
        assert resigned.body["data"]["resigned"] is True
        second = second_bg.result()
        assert second.value == "node-b"
        assert int(first.token) < int(second.token) < int(resigned.headers["x-cairn-applied-index"]), "it was queued before the resign"
        assert next_event(lambda e: e is not None and e.token == second.token).value == "node-b"

        with pytest.raises(Conflict) as info:
            first.proclaim("again")
        assert info.value.code == "fenced"

        second.resign()
        first.resign()  # already gone: done, not an error
        assert next_event(lambda e: e is None) is None
        assert kv.leader(name) is None
        leader_client.close()
    finally:
        obs.close()
        first_lease.revoke()
        second_lease.revoke()
