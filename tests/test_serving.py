"""`sanction serve` under pressure, with real processes: deadlines."""

import json
import time

import grpc
import pytest
from conftest import list_person, make_ric
from processes import ServerProcess, sanction
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc

from clients.sanction_client import Passenger, RestrictionClient, Trip, check_request

PERSON = make_ric("110105", "19800101", 123)
FLIGHT = Trip("FLIGHT")


def make_store(path, *events):
    assert sanction("init", "--data-dir", str(path)).returncode == 0
    if events:
        feed = path.parent / f"{path.name}.jsonl"
        feed.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
        assert sanction("load", "--data-dir", str(path), str(feed)).returncode == 0
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A store listing PERSON, shared by the tests that only read (and count refusals as deltas)."""
    return make_store(tmp_path_factory.mktemp("serving") / "data", list_person("L1", PERSON))


def refused_flights(target: str) -> int:
    with RestrictionClient(target, timeout=5) as client:
        return next(c.value for c in client.stats().refused_checks_by_mode if c.key == "FLIGHT")


def test_answers_past_their_deadline_are_neither_worked_out_nor_counted(data):
    batch = pb.BatchCheckRequest(checks=[check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT)] * 1000)
    with ServerProcess("--data-dir", str(data)) as server:
        target = server.wait_serving()
        stub = restriction_pb2_grpc.RestrictionServiceStub(grpc.insecure_channel(target))
        full = 30.0
        for _ in range(3):  # the fastest of three: the server cannot beat a quarter of it
            started = time.monotonic()
            stub.BatchCheckRestriction(batch, timeout=30)
            full = min(full, time.monotonic() - started)
        before = refused_flights(target)
        received = expired = 0
        # Deadlines far from the time needed, so no answer is sent just as its deadline
        # passes at the client (that one would be counted and lost).
        for deadline in (full / 4, 0.001, full / 8, 30):
            try:
                answer = stub.BatchCheckRestriction(batch, timeout=deadline)
                received += sum(item.result.decision == pb.DENY for item in answer.items)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                expired += 1
        assert expired >= 1 and received >= 1000
        assert refused_flights(target) - before == received
