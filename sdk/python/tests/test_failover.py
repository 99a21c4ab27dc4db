"""Failover: kill the leader (SIGKILL) in the middle of a run of strong gets, conditional puts
and increments, and check the client's promises held:

- gets and conditional puts carry on after the kill;
- a conditional put fails with Conflict only when a write's outcome was unknown (an earlier call
  raised UnknownOutcome, or an earlier attempt of the same call broke after sending:
  `prior_unknown`);
- increments: with S acknowledged and U unknown, the counter ends between S and S + U. Nothing
  was applied twice, and an Unavailable increment was never applied;
- no other error comes out;
- a watch on the leader's node resumes on another node with Last-Event-ID: its events come in
  strictly increasing order, none twice, and every acknowledged put is among them.

Three workers share one client (so the kill lands while requests are in flight, and the client
is used from several threads); each has its own document, and all add to one counter.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Tuple

import pytest

from cairn_client import CairnError, Client, Conflict, Timeouts, Unavailable, UnknownOutcome, WatchEvent
from cluster import Cluster

RUN_SECONDS = 6.0
KILL_AT = 1.5
WORKERS = 3


@dataclass
class Tally:
    acked: int = 0  # increments acknowledged
    unknown: int = 0  # increments whose outcome is unknown
    ok_after_kill: Counter = field(default_factory=Counter)
    seen: Counter = field(default_factory=Counter)
    bad: List[Tuple[str, CairnError]] = field(default_factory=list)
    iterations: int = 0
    put_versions: List[int] = field(default_factory=list)  # acknowledged puts of this doc


def worker(kv: Client, doc: str, stop: threading.Event, killed: threading.Event, t: Tally) -> None:
    last_version = kv.put(doc, 0).version
    t.put_versions.append(int(last_version))
    unknown_puts = explained = 0
    n = 0
    while not stop.is_set():
        n += 1
        # Whether the kill happened before this operation started: only those count as
        # "carried on after the kill".
        after = killed.is_set()
        try:
            got = kv.get(doc, consistency="strong")
            assert got is not None
            last_version = got.version
            t.ok_after_kill["get"] += after
        except Unavailable:
            t.seen["get Unavailable"] += 1
        except CairnError as e:
            t.bad.append(("get", e))

        after = killed.is_set()
        try:
            last_version = kv.put(doc, n, if_version=last_version).version
            t.put_versions.append(int(last_version))
            t.ok_after_kill["put"] += after
        except UnknownOutcome:
            t.seen["put UnknownOutcome"] += 1
            unknown_puts += 1
        except Conflict as e:
            t.seen["put Conflict"] += 1
            # (A call whose own earlier attempt may have applied raises UnknownOutcome instead.)
            if explained < unknown_puts:
                # An earlier put whose outcome was unknown was applied after all; each such put
                # can move the version under this worker once.
                explained += 1
            else:
                t.bad.append(("put: a Conflict that no unknown outcome explains", e))
        except Unavailable:
            t.seen["put Unavailable"] += 1
        except CairnError as e:
            t.bad.append(("put", e))

        after = killed.is_set()
        try:
            kv.increment("counter")
            t.acked += 1
            t.ok_after_kill["increment"] += after
        except UnknownOutcome:
            t.unknown += 1
            t.seen["increment UnknownOutcome"] += 1
        except Unavailable:
            t.seen["increment Unavailable"] += 1
        except CairnError as e:
            t.bad.append(("increment", e))
    t.iterations = n


@pytest.mark.cluster
def test_killing_the_leader_mid_run_loses_and_duplicates_nothing():
    cluster = Cluster(size=3, name="failover")
    try:
        cluster.start()
        leader = cluster.leader()
        kv_namespace = "sdk-fo-" + secrets.token_hex(3)
        kv = Client(
            cluster.urls(),
            token=cluster.admin_token,
            namespace=kv_namespace,
            timeout=Timeouts(connect=1.0, request=5.0),
        )
        followers = [cluster.url(i) for i in range(1, 4) if i != leader]
        watch_client = Client([cluster.url(leader)] + followers, token=cluster.admin_token, namespace=kv_namespace)
        start_version = kv.put("doc-start", 0).version
        watch = watch_client.watch("doc", after=start_version)
        events: List[WatchEvent] = []
        watch_errors: List[BaseException] = []

        def follow() -> None:
            try:
                for ev in watch:
                    events.append(ev)
                    if any(c.key == "doc-end" for c in ev.changes):
                        return
            except BaseException as e:
                watch_errors.append(e)

        watcher = threading.Thread(target=follow)
        watcher.start()

        stop, killed = threading.Event(), threading.Event()
        tallies = [Tally() for _ in range(WORKERS)]
        errors: List[BaseException] = []

        def run(i: int) -> None:
            try:
                worker(kv, f"doc{i}", stop, killed, tallies[i])
            except BaseException as e:  # surfaced below, with the thread's own traceback
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(WORKERS)]
        for th in threads:
            th.start()
        try:
            # Event.wait as a timer: the workers run meanwhile; nothing waits on a race.
            stop.wait(KILL_AT)
            cluster.kill(leader)
            killed.set()
            stop.wait(RUN_SECONDS - KILL_AT)
        finally:
            stop.set()
            for th in threads:
                # A call takes at most its attempts times the request timeout.
                th.join(60)
        assert not any(th.is_alive() for th in threads), "a worker did not stop"
        assert not errors, errors

        # The counter, read strongly once the cluster answers again.
        deadline = time.monotonic() + 30
        while True:
            try:
                item = kv.get("counter", consistency="strong")
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
        value = 0 if item is None else item.value

        # The end marker; the watcher stops at its event.
        while True:
            try:
                kv.put("doc-end", 1)
                break
            except (Unavailable, UnknownOutcome):
                if time.monotonic() > deadline:
                    raise
        watcher.join(30)
        if watcher.is_alive():
            watch.close()
            watcher.join(10)
            pytest.fail(f"the watch did not deliver the end marker within 30 s ({len(events)} events)")
        assert not watch_errors, watch_errors
        indexes = [int(ev.index) for ev in events]
        assert indexes == sorted(set(indexes)), "watch events out of order or repeated"
        assert watch.reconnects >= 1, "the watch on the killed leader never resumed elsewhere"
        for i, t in enumerate(tallies):
            watched = {int(ev.index) for ev in events if any(c.key == f"doc{i}" for c in ev.changes)}
            missing = [v for v in t.put_versions if v not in watched]
            assert not missing, f"doc{i}: acknowledged puts missing from the watch: {missing}"

        acked = sum(t.acked for t in tallies)
        unknown = sum(t.unknown for t in tallies)
        ok_after_kill = sum((t.ok_after_kill for t in tallies), Counter())
        seen = sum((t.seen for t in tallies), Counter())
        bad = [b for t in tallies for b in t.bad]
        summary = (
            f"iterations={[t.iterations for t in tallies]} acked={acked} unknown={unknown} value={value} "
            f"ok_after_kill={dict(ok_after_kill)} seen={dict(seen)} watch_events={len(indexes)} "
            f"watch_reconnects={watch.reconnects}"
        )
        print(summary)
        assert not bad, f"unexpected errors: {bad}; {summary}"
        assert acked <= value <= acked + unknown, summary
        assert ok_after_kill["get"] > 0, summary
        assert ok_after_kill["put"] > 0, summary
        assert ok_after_kill["increment"] > 0, summary
        watch.close()
        watch_client.close()
        kv.close()
    finally:
        cluster.stop()
