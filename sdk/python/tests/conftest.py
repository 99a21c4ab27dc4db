"""Fixtures: the live 3-node cluster the shared cases run against, and its clients.

The tests import the package from this tree's src/ (so they test the code beside them, installed
or not), unless CAIRN_SDK_TEST_INSTALLED is set: then they test the installed copy."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

HERE = Path(__file__).resolve().parent
if not os.environ.get("CAIRN_SDK_TEST_INSTALLED"):
    sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from cairn_client import Client  # noqa: E402
from cluster import Cluster, free_port  # noqa: E402


@dataclass
class CasesEnv:
    cluster: Cluster
    namespace: str
    run: str
    clients: Dict[str, Client]


@pytest.fixture(scope="session")
def cases_env() -> Iterator[CasesEnv]:
    cluster = Cluster(size=3, name="cases")
    clients: Dict[str, Client] = {}
    try:
        cluster.start()
        leader = cluster.leader()
        followers = [i for i in range(1, 4) if i != leader]
        namespace = "sdk-" + secrets.token_hex(4)
        reader_token = cluster.create_token(namespace, ["read"])
        # The clients that read another client's writes ('default' writes, 'reader' reads) list
        # the leader first: a client's read-your-writes covers its own writes only, and a
        # follower may not have applied another client's write yet when the read comes.
        leader_first = [cluster.url(leader)] + [cluster.url(i) for i in followers]
        admin = cluster.admin_token
        clients = {
            "default": Client(leader_first, token=admin, namespace=namespace),
            "follower": Client([cluster.url(followers[0])], token=admin, namespace=namespace),
            "reader": Client(leader_first, token=reader_token),
            # The shape of a real token (cairn_<16 hex id>_<64 hex secret>) that matches none.
            "badtoken": Client(
                cluster.urls(), token=f"cairn_{secrets.token_hex(8)}_{secrets.token_hex(32)}", namespace=namespace
            ),
            "dead": Client([f"http://127.0.0.1:{free_port()}"], token=admin, namespace=namespace, retry=False),
        }
        yield CasesEnv(cluster=cluster, namespace=namespace, run="r" + secrets.token_hex(3), clients=clients)
    finally:
        for c in clients.values():
            c.close()
        cluster.stop()
