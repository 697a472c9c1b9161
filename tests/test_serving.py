"""`sanction serve` under pressure, with real processes: idle streams, a stream bound, a
taken port, deadlines, signals and shutdown, keepalive pings and connection age."""

import contextlib
import json
import signal
import threading
import time

import grpc
import lmdb
import pytest
from conftest import list_person, make_ric
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from processes import ServerProcess, sanction
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip, check_request

PERSON = make_ric("110105", "19800101", 123)
OTHER = make_ric("320102", "19900101", 7)
FLIGHT = Trip("FLIGHT")
HEALTH = health_pb2.HealthCheckRequest()
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
EXIT_IN_USE = 3


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


def stream_request(i: int) -> pb.StreamCheckRequest:
    return pb.StreamCheckRequest(request_id=str(i), check=check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT))


def open_idle_streams(channel, count: int, release: threading.Event, timeout: float = 10):
    """`count` streams, each answered once and then idle until `release` is set."""
    stub = restriction_pb2_grpc.RestrictionServiceStub(channel)

    def one_then_idle(i):
        yield stream_request(i)
        release.wait()

    calls = [stub.StreamCheckRestriction(one_then_idle(i), timeout=timeout) for i in range(count)]
    return calls, [next(call) for call in calls]


def test_64_idle_streams_leave_unary_checks_and_health_answering_within_a_second(data):
    release = threading.Event()
    with ServerProcess("--data-dir", str(data)) as server:
        target = server.wait_serving()
        streams = grpc.insecure_channel(target)
        try:
            calls, first = open_idle_streams(streams, 64, release, timeout=5)
            assert all(answer.result.decision == pb.DENY for answer in first)
            started = time.monotonic()
            with RestrictionClient(target, timeout=1) as client:
                assert client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT).decision == "DENY"
            health = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
            assert health.Check(HEALTH, timeout=1).status == SERVING
            assert time.monotonic() - started < 1
        finally:
            release.set()
            streams.close()


def test_a_stream_beyond_the_bound_is_refused_with_a_retry_hint_and_idle_streams_are_ended(data):
    release = threading.Event()
    env = {"SANCTION_MAX_STREAMS": "2", "SANCTION_STREAM_IDLE_SECONDS": "1"}
    with ServerProcess("--data-dir", str(data), env=env) as server:
        target = server.wait_serving()
        channel = grpc.insecure_channel(target)
        try:
            calls, _ = open_idle_streams(channel, 2, release)
            with pytest.raises(grpc.RpcError) as refused:
                open_idle_streams(channel, 1, release)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = rpc_status.from_call(refused.value).details
            assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details)
            # Idle past the limit, both open streams are ended, and their slots are free again.
            for call in calls:
                with pytest.raises(grpc.RpcError) as ended:
                    next(call)
                assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and "idle" in ended.value.details()
            open_idle_streams(channel, 2, release)
        finally:
            release.set()
            channel.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_instance_on_the_same_port_or_data_dir_is_refused(data, tmp_path, workers):
    other = make_store(tmp_path / "other")  # empty: were the port shared, some checks would answer ALLOW
    extra = ("--workers", "2") if workers > 1 else ()
    with ServerProcess("--data-dir", str(data), *extra) as first, contextlib.ExitStack() as started:
        target = first.wait_serving(workers=workers)
        attempts = [("--data-dir", str(other), "--listen", target, *extra)]
        if workers > 1:
            attempts += [
                ("--data-dir", str(other), "--listen", target),  # a single process, too
                ("--data-dir", str(data), *extra),
            ]  # another port, the same data dir
        for args in attempts:
            second = started.enter_context(ServerProcess(*args))  # stopped however the test ends
            assert second.wait(60) == EXIT_IN_USE, second.lines
            said = [line for line in second.lines if "ERROR" in line]
            assert len(said) == 1 and ("in use" in said[0] or "served by another" in said[0]), second.lines
            assert not any("Traceback" in line for line in second.lines)
        for _ in range(10):  # a new connection each time: each could have gone to an impostor
            with RestrictionClient(target, timeout=5) as client:
                assert client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT).decision == "DENY"
        assert first.stop() == 0


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


def test_sigterm_drains_then_lets_the_call_in_flight_finish_and_exits_0(tmp_path):
    data = make_store(tmp_path / "data", list_person("L1", PERSON))
    release = threading.Event()
    env = {"SANCTION_DRAIN_SECONDS": "1", "SANCTION_SHUTDOWN_GRACE_SECONDS": "30"}
    with ServerProcess("--data-dir", str(data), env=env) as server:
        target = server.wait_serving()
        stream_channel = grpc.insecure_channel(target)
        (stream,), _ = open_idle_streams(stream_channel, 1, release, timeout=60)
        # A real slow call: ApplyEvents waits for LMDB's write lock, which we hold as a loader would.
        env = lmdb.open(str(data), max_dbs=16, readahead=False)
        writing = env.begin(write=True)
        applied = {}

        def apply():
            with RestrictionClient(target, timeout=60) as client:
                applied["response"] = client.apply_events([list_person("L2", OTHER)])

        in_flight = threading.Thread(target=apply)
        in_flight.start()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
        while health.Check(HEALTH, timeout=1).status != NOT_SERVING:
            assert time.monotonic() - signalled < 1
        with RestrictionClient(target, timeout=1) as client:  # still serving while load balancers move away
            assert client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT).decision == "DENY"
        probe = restriction_pb2_grpc.RestrictionServiceStub(grpc.insecure_channel(target))  # no retries
        while True:
            try:
                probe.CheckRestriction(check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT), timeout=1)
            except grpc.RpcError as exc:
                # UNAVAILABLE once the server stops taking calls; a call that arrives in the
                # instant grpc begins to stop is cancelled by grpc itself (seen on a loaded
                # machine). Either way it is refused, never answered.
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                break
            time.sleep(0.05)
        assert time.monotonic() - signalled > 0.9  # the drain delay
        with pytest.raises(grpc.RpcError) as ended:
            next(stream)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert in_flight.is_alive() and server.proc.poll() is None
        writing.abort()
        env.close()
        in_flight.join(30)
        assert applied["response"].applied == 1
        assert server.wait(30) == 0
        release.set()
    assert not any("Traceback" in line for line in server.lines)


@pytest.mark.parametrize(
    "signum, moment",
    [
        (signal.SIGTERM, "now stop the server cleanly"),
        (signal.SIGINT, "now stop the server cleanly"),
        (signal.SIGTERM, "listening on"),
        (signal.SIGINT, "SERVING at"),
    ],
)
def test_a_signal_at_any_moment_of_start_up_exits_0_without_a_traceback(data, signum, moment):
    with ServerProcess("--data-dir", str(data), "--log-level", "DEBUG") as server:
        deadline = time.monotonic() + 60
        while not any(moment in line for line in server.lines):
            assert server.proc.poll() is None and time.monotonic() < deadline, server.lines
            time.sleep(0.001)
        server.proc.send_signal(signum)
        assert server.wait(30) == 0, server.lines
    assert not any("Traceback" in line for line in server.lines), server.lines


def connection_states(channel) -> list:
    states: list = []
    channel.subscribe(states.append, try_to_connect=True)
    grpc.channel_ready_future(channel).result(timeout=10)
    return states


def test_a_client_pinging_every_second_keeps_its_idle_connection(data):
    with ServerProcess("--data-dir", str(data)) as server:
        target = server.wait_serving()
        channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.keepalive_time_ms", 1000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
            ],
        )
        states = connection_states(channel)
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(HEALTH, timeout=2).status == SERVING
        time.sleep(11)  # gRPC's default policy sent GOAWAY too_many_pings after ~4 s
        assert states[-1] == grpc.ChannelConnectivity.READY and states.count(grpc.ChannelConnectivity.READY) == 1
        assert health.Check(HEALTH, timeout=2).status == SERVING
        channel.close()


def test_connections_are_recycled_at_their_maximum_age_without_failing_calls(data):
    env = {"SANCTION_MAX_CONNECTION_AGE_SECONDS": "1", "SANCTION_MAX_CONNECTION_AGE_GRACE_SECONDS": "1"}
    with ServerProcess("--data-dir", str(data), env=env) as server:
        target = server.wait_serving()
        with RestrictionClient(target, timeout=5) as client:
            states = connection_states(client.channel)
            ended = time.monotonic() + 3.5
            while time.monotonic() < ended:
                assert client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT).decision == "DENY"
                time.sleep(0.05)
        # GOAWAY after ~1 s (±10 % jitter): the channel went back to IDLE and reconnected.
        assert states.count(grpc.ChannelConnectivity.READY) >= 2, states
