"""The metrics of real `sanction serve` processes: every RPC started once and handled once
with its code, the in-flight gauge back to 0, the store's gauges equal to the store's
figures and exported once, `--workers 2` through one endpoint; and the operations files
(docs/ops/) against promtool and a real scrape."""

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from conftest import list_person, make_ric
from grpc_health.v1 import health_pb2, health_pb2_grpc
from processes import ServerProcess, sanction
from prometheus_client.parser import text_string_to_metric_families
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip, check_request

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "docs" / "ops"
RESTRICTION = "sanction.v1.RestrictionService"
LISTED = [make_ric("110105", "19800101", n) for n in range(1, 31)]
UNLISTED = make_ric("320102", "19900101", 7)
FLIGHT = Trip("FLIGHT")
LAST_EVENT = "2026-03-02T08:30:00+08:00"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: `make promtool` installs Debian's prometheus package, which provides it"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def samples(page: str) -> list[tuple[str, dict, float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(page) for s in family.samples]


def total(page: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, ls, v in samples(page) if n == name and all(ls.get(k) == w for k, w in labels.items()))


def series(page: str, name: str, **labels) -> list[dict]:
    return [ls for n, ls, _ in samples(page) if n == name and all(ls.get(k) == w for k, w in labels.items())]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "data"
    assert sanction("init", "--data-dir", str(path)).returncode == 0
    events = [
        list_person(f"L{i}", n, list_type="CONSUMPTION_RESTRICTION" if i % 3 == 0 else "DISHONEST")
        for i, n in enumerate(LISTED)
    ]
    events[-1]["occurred_at"] = LAST_EVENT
    feed = path.parent / "feed.jsonl"
    feed.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    assert sanction("load", "--data-dir", str(path), str(feed)).returncode == 0
    return path


def store_figures(target: str) -> tuple[dict, int, float]:
    """Active listings by type, data version and last event time, as GetStats tells them."""
    with RestrictionClient(target, timeout=5) as client:
        stats = client.stats()
    active = {c.key: c.value for c in stats.active_listings_by_type}
    return active, stats.data_version, datetime.fromisoformat(stats.last_event_time).timestamp()


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


@pytest.fixture(scope="module")
def exercised(data):
    """A server after a known mix of calls: its scrape, address and metrics port."""
    port = free_port()
    env = {"SANCTION_MAX_STREAMS": "1"}
    with ServerProcess("--data-dir", str(data), "--metrics-port", str(port), env=env) as server:
        target = server.wait_serving()
        channel = grpc.insecure_channel(target)
        stub = restriction_pb2_grpc.RestrictionServiceStub(channel)
        ask = lambda number: check_request(Passenger("RESIDENT_ID", number), FLIGHT)  # noqa: E731
        assert stub.CheckRestriction(ask(UNLISTED), timeout=5).decision == pb.ALLOW
        assert stub.CheckRestriction(ask(UNLISTED), timeout=5).decision == pb.ALLOW
        assert stub.CheckRestriction(ask(LISTED[0]), timeout=5).decision == pb.DENY
        with pytest.raises(grpc.RpcError) as bad:
            stub.CheckRestriction(ask("110105198001010011"), timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        answer = stub.BatchCheckRestriction(pb.BatchCheckRequest(checks=[ask(n) for n in LISTED[:3]]), timeout=5)
        assert len(answer.items) == 3
        # A batch past its deadline: the server answers DEADLINE_EXCEEDED (checked before
        # and after the work); retried until the server has refused one.
        big = pb.BatchCheckRequest(checks=[ask(UNLISTED)] * 1000)
        late = answered = 0
        for _ in range(50):
            late += 1
            try:
                stub.BatchCheckRestriction(big, timeout=0.0005)
                answered += 1
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if wait_for(
                lambda: total(
                    scrape(port),
                    "grpc_server_handled_total",
                    grpc_method="BatchCheckRestriction",
                    grpc_code="DEADLINE_EXCEEDED",
                ),
                1.0,
            ):
                break
        # A stream: two answers (one an error inside the stream), then closed by the client: OK.
        release = threading.Event()

        def requests():
            yield pb.StreamCheckRequest(request_id="1", check=ask(LISTED[1]))
            yield pb.StreamCheckRequest(check=ask(LISTED[1]))  # no request_id: an error message, not a status
            release.wait(10)

        stream = stub.StreamCheckRestriction(requests(), timeout=10)
        replies = [next(stream), next(stream)]
        assert replies[0].result.decision == pb.DENY and replies[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        # The only stream slot is taken: the next stream is refused.
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.StreamCheckRestriction(iter([pb.StreamCheckRequest(request_id="x", check=ask(UNLISTED))]), timeout=5))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        release.set()
        assert list(stream) == []
        # A stream the client cancels.
        cancelled_release = threading.Event()

        def then_wait():
            yield pb.StreamCheckRequest(request_id="1", check=ask(UNLISTED))
            cancelled_release.wait(10)

        wait_for(lambda: total(scrape(port), "sanction_rpcs_in_flight") == 0)
        doomed = stub.StreamCheckRestriction(then_wait(), timeout=10)
        next(doomed)
        doomed.cancel()
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        wait_for(lambda: total(scrape(port), "grpc_server_handled_total", grpc_method="StreamCheckRestriction") == 3)
        cancelled_release.set()  # only now: a half-close racing the cancellation would end the stream OK
        wait_for(lambda: total(scrape(port), "sanction_rpcs_in_flight") == 0)
        page = scrape(port)
        figures = store_figures(target)
        channel.close()
        yield {"page": page, "late": late, "answered": answered, "figures": figures, "port": port, "target": target}


def handled(page: str, method: str, code: str) -> float:
    return total(page, "grpc_server_handled_total", grpc_method=method, grpc_code=code)


def test_each_rpc_is_started_once_and_handled_once_with_its_code(exercised):
    page = exercised["page"]
    unary = dict(grpc_service=RESTRICTION, grpc_method="CheckRestriction", grpc_type="unary")
    assert total(page, "grpc_server_started_total", **unary) == 4
    assert handled(page, "CheckRestriction", "OK") == 3
    assert handled(page, "CheckRestriction", "INVALID_ARGUMENT") == 1
    assert total(page, "grpc_server_handling_seconds_count", **unary) == 4
    assert total(page, "grpc_server_handling_seconds_bucket", le="+Inf", **unary) == 4

    # A call whose deadline passed before grpc gave it to a handler is never started; one
    # the server answered just as the deadline passed is OK here and late at the client.
    batches = total(page, "grpc_server_started_total", grpc_method="BatchCheckRestriction")
    assert 2 <= batches <= 1 + exercised["late"]
    assert handled(page, "BatchCheckRestriction", "OK") >= 1 + exercised["answered"]
    assert handled(page, "BatchCheckRestriction", "DEADLINE_EXCEEDED") >= 1
    assert total(page, "grpc_server_handled_total", grpc_method="BatchCheckRestriction") == batches

    stream = dict(grpc_method="StreamCheckRestriction", grpc_type="bidi_stream")
    assert total(page, "grpc_server_started_total", **stream) == 3
    assert handled(page, "StreamCheckRestriction", "RESOURCE_EXHAUSTED") == 1
    # The cancelled one: CANCELLED, or OK when grpc ended its requests as if the client had
    # closed its side, before it marked the call cancelled (the handler cannot tell).
    assert handled(page, "StreamCheckRestriction", "OK") + handled(page, "StreamCheckRestriction", "CANCELLED") == 2
    assert handled(page, "StreamCheckRestriction", "OK") >= 1

    assert total(page, "grpc_server_started_total", grpc_service="grpc.health.v1.Health", grpc_method="Check") == 1
    assert handled(page, "Check", "OK") == 1
    # Every series of the per-RPC metrics names service, method and type; codes are gRPC's names.
    codes = {ls["grpc_code"] for ls in series(page, "grpc_server_handled_total")}
    assert codes <= {c.name for c in grpc.StatusCode}
    assert {ls["worker"] for ls in series(page, "grpc_server_started_total")} == {"0"}


def test_in_flight_returns_to_zero_and_the_store_gauges_are_the_store_figures(exercised):
    page = exercised["page"]
    assert series(page, "sanction_rpcs_in_flight") and total(page, "sanction_rpcs_in_flight") == 0
    active, version, last_event = exercised["figures"]
    assert {ls["list_type"]: v for n, ls, v in samples(page) if n == "sanction_active_listings"} == active
    assert sum(active.values()) == len(LISTED)
    assert total(page, "sanction_journal_sequence") == version
    assert total(page, "sanction_last_event_timestamp_seconds") == last_event
    assert last_event == datetime.fromisoformat(LAST_EVENT).timestamp()
    assert total(page, "sanction_serving") == 1


def test_a_call_refused_by_the_token_check_is_counted_unauthenticated(data, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"clients": [{"name": "rail", "token": "t" * 32, "roles": ["check"]}]}))
    port = free_port()
    with ServerProcess("--data-dir", str(data), "--metrics-port", str(port), "--tokens-file", str(tokens)) as server:
        target = server.wait_serving()
        with grpc.insecure_channel(target) as channel:
            stub = restriction_pb2_grpc.RestrictionServiceStub(channel)
            request = check_request(Passenger("RESIDENT_ID", UNLISTED), FLIGHT)
            with pytest.raises(grpc.RpcError) as refused:
                stub.CheckRestriction(request, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.CheckRestriction(request, timeout=5, metadata=[("authorization", "Bearer " + "t" * 32)])
        page = scrape(port)
    assert handled(page, "CheckRestriction", "UNAUTHENTICATED") == 1
    assert handled(page, "CheckRestriction", "OK") == 1
    assert total(page, "grpc_server_started_total", grpc_method="CheckRestriction") == 2


def test_two_workers_are_scraped_through_one_endpoint_with_the_right_sums(data):
    port = free_port()
    with ServerProcess("--data-dir", str(data), "--workers", "2", "--metrics-port", str(port)) as server:
        target = server.wait_serving(workers=2)
        folder = next(m.group(1) for line in server.lines if (m := re.search(r"files in (\S+)\)", line)))
        assert Path(folder).is_dir()
        # A fresh connection per check lets the kernel spread them over both workers.
        for number in LISTED:
            with RestrictionClient(target, timeout=5) as client:
                assert client.check(Passenger("RESIDENT_ID", number), FLIGHT).decision == "DENY"
        page = wait_for(lambda: page if total(page := scrape(port), "sanction_rpcs_in_flight") == 0 else None)
        figures = store_figures(target)
        assert server.stop() == 0
    started = {
        ls["worker"]: v
        for n, ls, v in samples(page)
        if n == "grpc_server_started_total" and ls["grpc_method"] == "CheckRestriction"
    }
    assert set(started) == {"0", "1"} and min(started.values()) > 0 and sum(started.values()) == len(LISTED)
    assert handled(page, "CheckRestriction", "OK") == len(LISTED)
    assert total(page, "sanction_decisions_total") == len(LISTED)
    assert total(page, "sanction_check_seconds_count") == len(LISTED)
    assert total(page, "grpc_server_handling_seconds_count", grpc_method="CheckRestriction") == len(LISTED)
    # The store's gauges once, not once per worker.
    active, version, last_event = figures
    assert len(series(page, "sanction_active_listings")) == len(active)
    assert total(page, "sanction_active_listings") == sum(active.values()) == len(LISTED)
    assert len(series(page, "sanction_journal_sequence")) == 1 and total(page, "sanction_journal_sequence") == version
    assert total(page, "sanction_last_event_timestamp_seconds") == last_event
    # Per-worker gauges: one series per worker, summing to the server's figure.
    assert sorted(ls["worker"] for ls in series(page, "sanction_serving")) == ["0", "1"]
    assert total(page, "sanction_serving") == 2
    assert total(page, "sanction_rpcs_in_flight") == 0
    assert not Path(folder).exists()  # the parent removed its metrics files


@needs_promtool
def test_promtool_accepts_a_real_scrape(exercised):
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=exercised["page"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_alert_rules_pass_promtool_check_and_their_unit_tests():
    rules = sorted(str(p) for p in OPS.glob("*alerts.yml"))
    assert len(rules) == 2, rules
    checked = subprocess.run([PROMTOOL, "check", "rules", *rules], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts.test.yml"], cwd=OPS, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def alert_names(path: Path) -> set[str]:
    return set(re.findall(r"^\s*- alert: (\w+)", path.read_text(), re.M))


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    tests = (OPS / "alerts.test.yml").read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", tests))
    names = alert_names(OPS / "alerts.yml") | alert_names(OPS / "replication-alerts.yml")
    assert names and fired == names and quiet == names, (names - fired, names - quiet)


PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "time",
    "changes",
    "delta",
    "clamp_min",
    "topk",
    "vector",
    "absent",
    "offset",
    "bool",
    "le",
    "inf",
    "e",
}


def dashboard_metric_names() -> set[str]:
    board = json.loads((OPS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 8
    names = set()
    for expr in exprs:
        bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
        bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)  # grouping labels
        bare = re.sub(r"\$\w+|\[[^\]]*\]|\"[^\"]*\"", "", bare)  # Grafana variables, ranges, strings
        names |= {w for w in re.findall(r"[A-Za-z_:][\w:]*", bare) if w.lower() not in PROMQL_WORDS}
    return names


def test_the_dashboard_asks_only_for_metrics_a_real_server_exports(exercised):
    exported = {n for n, _, _ in samples(exercised["page"])}
    used = dashboard_metric_names()
    assert {"grpc_server_handling_seconds_bucket", "sanction_last_event_timestamp_seconds"} <= used
    assert used - {"up"} <= exported, used - exported  # `up` is Prometheus's own, per scrape target


def test_the_server_alerts_name_only_metrics_a_real_server_exports(exercised):
    exported = {n for n, _, _ in samples(exercised["page"])}
    named = set(re.findall(r"\b(?:grpc_server|sanction)_\w+", (OPS / "alerts.yml").read_text()))
    assert {"grpc_server_handling_seconds_bucket", "sanction_serving"} <= named
    assert named <= exported, named - exported


def test_the_readme_lists_exactly_the_metrics_a_real_server_exports(exercised):
    families = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in text_string_to_metric_families(exercised["page"])
        if not f.name.startswith(("python_", "process_")) and not f.name.endswith("_created")
    }
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics\n") : readme.index("## Operations\n")]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert documented == families, documented ^ families


def test_the_interceptors_wrap_a_method_once_not_on_every_call():
    # Wrapping afresh per call cost ~40 us of CPU per unary check (BENCHMARKS.md): the
    # caller gate handed the metrics interceptor a new handler each time.
    from types import SimpleNamespace

    from sanction_service.grpc_api.caller import CallerInterceptor
    from sanction_service.grpc_api.rpc_metrics import MetricsInterceptor

    registered = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    gate, instrument = CallerInterceptor(None, None), MetricsInterceptor("0")
    details = SimpleNamespace(method="/sanction.v1.RestrictionService/CheckRestriction", invocation_metadata=())

    def through_both():
        return instrument.intercept_service(lambda d: gate.intercept_service(lambda _: registered, d), details)

    first = through_both()
    assert first is not registered and first.unary_unary is not registered.unary_unary
    assert all(through_both() is first for _ in range(3))
