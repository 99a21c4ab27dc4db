"""Failover: kill the leader (SIGKILL) in the middle of a run of strong gets, conditional puts
and increments, and check the client's promises held:

- gets and conditional puts carry on after the kill;
- a conditional put fails with Conflict only when a write's outcome was unknown (an earlier call
  raised UnknownOutcome, or an earlier attempt of the same call broke after sending:
  `prior_unknown`);
- increments: with S acknowledged and U unknown, the counter ends between S and S + U. Nothing
  was applied twice, and an Unavailable increment was never applied;
- no other error comes out.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import List, Tuple

import pytest

from cairn_client import CairnError, Client, Conflict, Timeouts, Unavailable, UnknownOutcome
from cluster import Cluster

RUN_SECONDS = 6.0
KILL_AT = 1.5


@pytest.mark.cluster
def test_killing_the_leader_mid_run_loses_and_duplicates_nothing():
    cluster = Cluster(size=3, name="failover")
    try:
        cluster.start()
        leader = cluster.leader()
        kv = Client(
            cluster.urls(),
            token=cluster.admin_token,
            namespace="sdk-fo-" + secrets.token_hex(3),
            timeout=Timeouts(connect=1.0, request=5.0),
        )
        last_version = kv.put("doc", 0).version
        acked = unknown = 0  # increments
        unknown_puts = unexplained_budget_used = 0
        ok_after_kill: Counter = Counter()
        seen: Counter = Counter()
        bad: List[Tuple[str, CairnError]] = []
        start = time.monotonic()
        killed = False
        n = 0
        while time.monotonic() - start < RUN_SECONDS:
            if not killed and time.monotonic() - start >= KILL_AT:
                cluster.kill(leader)
                killed = True
            n += 1

            try:
                got = kv.get("doc", consistency="strong")
                assert got is not None
                last_version = got.version
                ok_after_kill["get"] += killed
            except Unavailable as e:
                seen["get Unavailable"] += 1
            except CairnError as e:
                bad.append(("get", e))

            try:
                last_version = kv.put("doc", n, if_version=last_version).version
                ok_after_kill["put"] += killed
            except UnknownOutcome:
                seen["put UnknownOutcome"] += 1
                unknown_puts += 1
            except Conflict as e:
                seen["put Conflict"] += 1
                if e.prior_unknown:
                    pass  # this call's own earlier attempt may have been applied
                elif unexplained_budget_used < unknown_puts:
                    # An earlier put whose outcome was unknown was applied after all; each such
                    # put can move the version under us once.
                    unexplained_budget_used += 1
                else:
                    bad.append(("put: a Conflict no unknown outcome explains", e))
            except Unavailable:
                seen["put Unavailable"] += 1
            except CairnError as e:
                bad.append(("put", e))

            try:
                kv.increment("counter")
                acked += 1
                ok_after_kill["increment"] += killed
            except UnknownOutcome:
                unknown += 1
            except Unavailable:
                seen["increment Unavailable"] += 1
            except CairnError as e:
                bad.append(("increment", e))

        assert killed
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
        summary = f"iterations={n} acked={acked} unknown={unknown} value={value} ok_after_kill={dict(ok_after_kill)} seen={dict(seen)}"
        assert not bad, f"unexpected errors: {bad}; {summary}"
        assert acked <= value <= acked + unknown, summary
        assert ok_after_kill["get"] > 0, summary
        assert ok_after_kill["put"] > 0, summary
        assert ok_after_kill["increment"] > 0, summary
        print(summary)
    finally:
        cluster.stop()
