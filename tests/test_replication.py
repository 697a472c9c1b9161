"""Replication through a real NATS JetStream server (`nats-server -js` on an ephemeral
loopback port): one publisher, several followers, kill -9, NATS restarts, snapshots,
gaps, poisoned messages, another pepper, and health while a follower is behind. Real
`sanction` processes throughout; digests are compared with a local `sanction load`."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from crash_harness import PEPPER, PEPPER_HEX, digest, init, load_command, probe_violations
from natsserver import NatsServer, nats_server_binary
from processes import ROOT, ServerProcess, _env, sanction
from sanction_service.loaders import synth

pytestmark = pytest.mark.skipif(
    nats_server_binary() is None, reason="nats-server is not installed (`make test` installs Debian's nats-server)"
)

ENV = {"SANCTION_PEPPER": PEPPER_HEX}
OTHER_PEPPER_HEX = "7a" * 32
# LMDB must not be open twice at once in one process (closing one copy drops the other's
# file locks): this test process opens stores one at a time.
STORE_OPEN = threading.Lock()


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "jetstream").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    """A feed of every event type, mostly in force today, its probes and a clean local load's digest."""
    work = tmp_path_factory.mktemp("replication-feed")
    path = work / "feed.jsonl"
    synth.write_feed(path, 5, 2000, start=date.today())
    probes = list(synth.generate_probes(5, 2000, start=date.today()))
    clean = work / "clean"
    init(clean)
    assert subprocess.run(load_command(clean, path), env=_env(ENV), cwd=ROOT, capture_output=True).returncode == 0
    return path, probes, digest(clean)


def content(d: dict) -> dict:
    """A digest without the replica's own bookkeeping (what a local load also has)."""
    return {k: v for k, v in d.items() if k != "replication"}


def publish(server: NatsServer, path: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return sanction(
        "publish", "--nats", server.url, "--data-dir", str(path.parent), *extra, str(path), env={**ENV, **(env or {})}
    )


def follow(server: NatsServer, data: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanction_service",
            "follow",
            "--nats",
            server.url,
            "--data-dir",
            str(data),
            "--metrics-port",
            "0",
            *extra,
        ],
        env=_env({**ENV, **(env or {})}),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def position(data: Path) -> int:
    """The stream sequence a replica's store holds (0: none yet)."""
    from sanction_service.identity import pepper_fingerprint
    from sanction_service.replication.position import read_position
    from sanction_service.store import Store, StoreError

    with STORE_OPEN:
        try:
            store = Store(data, pepper_fingerprint(PEPPER), map_size=1 << 30)
        except StoreError:
            return 0
        try:
            with store.read() as view:
                where = read_position(view)
                return where.seq if where else 0
        finally:
            store.close()


def stream_last(server: NatsServer) -> int:
    import nats

    async def last() -> int:
        nc = await nats.connect(server.url)
        try:
            return (await nc.jetstream().stream_info("SANCTION_FEED")).state.last_seq
        finally:
            await nc.close()

    return asyncio.run(last())


def applied(status_file: Path) -> int:
    from sanction_service.replication.status import read_status

    status = read_status(status_file)
    return status.applied_seq if status else 0


def state(status_file: Path) -> str:
    from sanction_service.replication.status import read_status

    status = read_status(status_file)
    return status.state if status else ""


def wait_for(predicate, timeout=60.0, what="condition", every=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def replica_status(data: Path) -> dict:
    result = sanction("replica-status", "--data-dir", str(data), env=ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# 1. One publisher, three followers ----------------------------------------------------


def test_one_publisher_and_three_followers_end_with_the_digest_of_a_local_load(tmp_path, nats_server, feed):
    path, _, clean = feed
    published = publish(nats_server, path)
    assert published.returncode == 0, published.stderr
    assert " 0 duplicates" in published.stdout and " 0 rejected" in published.stdout
    end = stream_last(nats_server)
    replicas = [tmp_path / f"replica-{i}" for i in range(3)]
    for data in replicas:
        init(data)
    followers = [follow(nats_server, data) for data in replicas]
    try:
        for data in replicas:
            wait_for(lambda data=data: position(data) == end, what=f"{data.name} to catch up")
        # Publishing the same feed again publishes nothing.
        again = publish(nats_server, path)
        assert again.returncode == 0 and " 0 published" in again.stdout, again.stdout + again.stderr
        assert stream_last(nats_server) == end
    finally:
        errors = [stop(f) for f in followers]
    assert all(f.returncode == 0 for f in followers), errors
    digests = [digest(data) for data in replicas]
    assert all(content(d) == clean for d in digests)
    assert len({d["replication"] for d in digests}) == 1
    status = replica_status(replicas[0])
    assert status["position"]["seq"] == end and status["follower"]["state"] == "stopped"
    assert status["rejected"] == []


# 2. Validation and poisoned messages --------------------------------------------------


def test_publish_rejects_what_load_rejects_and_every_replica_rejects_a_poisoned_message_alike(tmp_path, nats_server):
    from conftest import event, list_person, make_ric

    person = make_ric("110105", "19800101", 7)
    listed = list_person("L-1", person, event_id="e-1")
    lines = [
        json.dumps(listed, ensure_ascii=False),
        '{"event_id": "e-bad", "type": "DELIST"',  # not JSON: never published
        json.dumps(event("DELIST", "L-404", event_id="e-2", reason="SETTLED", effective_on="2025-01-01")),
        json.dumps({**listed, "court": "另一个法院"}, ensure_ascii=False),  # conflict with e-1
        json.dumps(event("EXTEND", "L-1", event_id="e-3", expires_on="2020-01-01")),  # no fixed end to extend
        json.dumps(list_person("L-2", make_ric("110105", "19800101", 8), event_id="e-4"), ensure_ascii=False),
    ]
    path = tmp_path / "poison.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    local = tmp_path / "local"
    init(local)
    loaded = sanction("load", "--data-dir", str(local), "--rejects", str(tmp_path / "load.rejects"), str(path), env=ENV)
    assert loaded.returncode == 1

    published = publish(nats_server, path, "--rejects", str(tmp_path / "publish.rejects"))
    assert published.returncode == 1 and "5 published" in published.stdout and "1 rejected" in published.stdout
    load_rejects = [json.loads(x) for x in (tmp_path / "load.rejects").read_text().splitlines()]
    publish_rejects = [json.loads(x) for x in (tmp_path / "publish.rejects").read_text().splitlines()]
    assert publish_rejects == [r for r in load_rejects if r["line"] == 2]  # the parse error, same text

    # A message published by other means (no pepper fingerprint header) is rejected too.
    async def foreign() -> None:
        import nats

        nc = await nats.connect(nats_server.url)
        await nc.jetstream().publish("sanction.feed.LIST", json.dumps(list_person("L-3", person)).encode())
        await nc.close()

    asyncio.run(foreign())
    end = stream_last(nats_server)
    assert end == 6
    replicas = [tmp_path / "r1", tmp_path / "r2"]
    for data in replicas:
        init(data)
    followers = [follow(nats_server, data) for data in replicas]
    try:
        for data in replicas:
            wait_for(lambda data=data: position(data) == end)
    finally:
        for f in followers:
            stop(f)
    statuses = [replica_status(data) for data in replicas]
    assert statuses[0]["rejected"] == statuses[1]["rejected"]
    assert [(r["seq"], r["event_id"], r["field"]) for r in statuses[0]["rejected"]] == [
        (2, "e-2", "listing_id"),
        (3, "e-1", "event_id"),
        (4, "e-3", "expires_on"),
        (6, "", ""),
    ]
    assert "no Sanction-Pepper-Fingerprint header" in statuses[0]["rejected"][3]["reason"]
    digests = [digest(data) for data in replicas]
    assert content(digests[0]) == content(digests[1]) == digest(local) and digests[0] == digests[1]
    assert digests[0]["data_version"] == 2


# 3. kill -9 of a follower -------------------------------------------------------------


def test_a_follower_killed_at_random_points_resumes_exactly(tmp_path, nats_server, feed):
    path, probes, clean = feed
    assert publish(nats_server, path).returncode == 0
    end = stream_last(nats_server)
    data = tmp_path / "replica"
    init(data)
    rnd = random.Random(12)
    kills: list[tuple[int, int]] = []
    problems: list[str] = []
    asked = [0]
    done = threading.Event()

    def check_continuously() -> None:
        # Whatever the store holds at any moment must answer for every listing in force in it.
        last = 0
        while not done.is_set():
            before = position(data)
            with STORE_OPEN:
                n, found = probe_violations(data, probes)
            asked[0] += n
            problems.extend(found)
            if before < last:
                problems.append(f"stream position went back from {last} to {before}")
            last = before

    checker = threading.Thread(target=check_continuously, daemon=True)
    checker.start()
    attempts = 0
    status = data / "follower.status.json"
    try:
        while sum(before < after < end for before, after in kills) < 10:
            attempts += 1
            assert attempts <= 30, kills
            before = position(data)
            assert before < end - 20, f"the feed ran out before 10 interrupting kills: {kills}"
            # Somewhere in the next sixth of what is left; the status file (written after each
            # commit) is polled, not the store, so the kill follows the target closely.
            target = before + rnd.randrange(20, max(21, (end - before) // 6))
            # Paced (tests only): the fast event path would otherwise apply the rest of the
            # feed before the kill lands.
            proc = follow(nats_server, data, "--batch-size", "10", env={"SANCTION_TEST_BATCH_PAUSE": "0.02"})
            wait_for(
                lambda target=target, proc=proc: applied(status) >= target or proc.poll() is not None,
                what="the follower to apply",
                every=0.002,
            )
            time.sleep(rnd.uniform(0, 0.005))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            kills.append((before, position(data)))
        final = follow(nats_server, data)
        wait_for(lambda: position(data) == end, what="the last run to catch up")
        stop(final)
    finally:
        done.set()
        checker.join(60)
    interrupted = [(b, a) for b, a in kills if b < a < end]
    print(
        f"{len(kills)} SIGKILLs of the follower, {len(interrupted)} interrupted an apply; stream position "
        f"before -> after (end {end}): " + ", ".join(f"{b}->{a}" for b, a in kills) + f"; {asked[0]} probe checks"
    )
    assert len(interrupted) >= 10, kills
    assert not problems, problems[:5]
    assert asked[0] > 1000
    assert content(digest(data)) == clean


# 4. NATS restarts ---------------------------------------------------------------------


def test_publisher_and_followers_ride_out_a_nats_restart(tmp_path, nats_server, feed):
    path, _, clean = feed
    replicas = [tmp_path / "r1", tmp_path / "r2"]
    for data in replicas:
        init(data)
    # The stream exists before the followers start (an empty first publish creates it).
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert publish(nats_server, empty).returncode == 0
    followers = [follow(nats_server, data, "--batch-size", "20") for data in replicas]
    for data in replicas:  # both followers wait at the (empty) stream's head before publishing starts
        wait_for(lambda data=data: state(data / "follower.status.json") == "following", what="the followers")
    publisher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanction_service",
            "publish",
            "--nats",
            nats_server.url,
            "--window",
            "1",
            "--data-dir",
            str(path.parent),
            "--rejects",
            str(tmp_path / "rejects"),
            str(path),
        ],
        env=_env(ENV),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: applied(replicas[0] / "follower.status.json") > 100,
            every=0.002,
            what="publishing and following to be under way",
        )
        assert publisher.poll() is None, "the publisher finished before the restart"
        nats_server.restart(down_seconds=1.0)
        at_restart = [position(data) for data in replicas]
        out, err = publisher.communicate(timeout=120)
        assert publisher.returncode == 0, err
        end = stream_last(nats_server)
        for data in replicas:
            wait_for(lambda data=data: position(data) == end, timeout=90, what=f"{data.name} to catch up")
    finally:
        if publisher.poll() is None:
            publisher.kill()
        for f in followers:
            stop(f)
    lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    assert f"{lines} lines: " in out and "0 rejected" in out, out
    assert "reconnected to NATS" in err, err  # the restart did reach the publisher
    assert all(0 < p < end for p in at_restart), (at_restart, end)
    for data in replicas:
        assert content(digest(data)) == clean


# 5. Snapshots and bootstrap -----------------------------------------------------------


def test_a_new_replica_bootstraps_from_a_snapshot_taken_mid_stream_and_converges(tmp_path, nats_server, feed):
    path, _, clean = feed
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    rest.write_text("".join(lines[len(lines) // 2 :]), encoding="utf-8")
    assert publish(nats_server, first).returncode == 0
    middle = stream_last(nats_server)
    source = tmp_path / "source"
    init(source)
    follower = follow(nats_server, source)
    try:
        wait_for(lambda: position(source) == middle)
        snap = sanction("snapshot", "--nats", nats_server.url, "--data-dir", str(source), env=ENV)
        assert snap.returncode == 0, snap.stderr
        manifest = json.loads(snap.stdout)
        assert manifest["stream_seq"] == middle and manifest["digest"] == digest(source)["all"]
        assert publish(nats_server, rest).returncode == 0
    finally:
        stop(follower)
    end = stream_last(nats_server)

    fresh = tmp_path / "fresh"  # no store: the pepper comes from the environment
    new = follow(nats_server, fresh, "--bootstrap")
    try:
        wait_for(lambda: position(fresh) == end, timeout=90, what="the bootstrapped replica to converge")
    finally:
        err = stop(new)
    assert f"stream sequence {middle}" in err and "bootstrapped" in err
    assert content(digest(fresh)) == clean

    # Another pepper cannot bootstrap from it.
    other = follow(nats_server, tmp_path / "other", "--bootstrap", env={"SANCTION_PEPPER": OTHER_PEPPER_HEX})
    assert other.wait(60) == 2
    assert "another pepper" in other.stderr.read()
    assert not (tmp_path / "other" / "data.mdb").exists()


# 6. Refusals: another pepper, a gap ---------------------------------------------------


def test_a_replica_with_another_pepper_refuses_to_follow(tmp_path, nats_server, feed):
    path, _, _ = feed
    assert publish(nats_server, path).returncode == 0
    data = tmp_path / "replica"
    assert sanction("init", "--data-dir", str(data), env={"SANCTION_PEPPER": OTHER_PEPPER_HEX}).returncode == 0
    proc = follow(nats_server, data, env={"SANCTION_PEPPER": OTHER_PEPPER_HEX})
    assert proc.wait(60) == 2
    assert "pepper fingerprint" in proc.stderr.read()
    status = sanction("replica-status", "--data-dir", str(data), env={"SANCTION_PEPPER": OTHER_PEPPER_HEX})
    report = json.loads(status.stdout)
    assert report["data_version"] == 0 and report["follower"]["state"] == "refused"


def test_a_follower_behind_the_retained_window_refuses_instead_of_skipping(tmp_path, nats_server, feed):
    import nats

    path, _, _ = feed
    assert publish(nats_server, path).returncode == 0

    async def purge_first(n: int) -> None:
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().purge_stream("SANCTION_FEED", seq=n + 1)  # keeps sequences > n
        await nc.close()

    asyncio.run(purge_first(100))
    data = tmp_path / "replica"
    init(data)
    proc = follow(nats_server, data)
    assert proc.wait(60) == 5
    assert "behind the retained window" in proc.stderr.read()
    assert replica_status(data)["data_version"] == 0


# 7. Health of a server fed by a follower ----------------------------------------------


def test_follower_health_rule():
    from sanction_service.replication.status import FollowerStatus, follower_health

    now = 1000.0
    fresh = dict(updated_at=now - 1, head_checked_at=now - 1)
    rule = dict(lag_max=10, stale_seconds=5, now=now)
    assert not follower_health(None, None, **rule)[0]
    assert follower_health(FollowerStatus(state="following", head_seq=100, **fresh), 95, **rule)[0]
    behind = follower_health(FollowerStatus(state="catching_up", head_seq=100, **fresh), 80, **rule)
    assert not behind[0] and "20 events behind" in behind[1]
    assert not follower_health(
        FollowerStatus(state="following", head_seq=100, updated_at=now - 9, head_checked_at=now - 1), 100, **rule
    )[0]
    assert not follower_health(
        FollowerStatus(state="disconnected", head_seq=100, updated_at=now - 1, head_checked_at=now - 9), 100, **rule
    )[0]
    assert not follower_health(FollowerStatus(state="refused", head_seq=0, **fresh), 0, **rule)[0]


def test_a_server_fed_by_a_follower_is_not_serving_until_the_follower_has_caught_up(tmp_path, nats_server, feed):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    path, _, _ = feed
    assert publish(nats_server, path).returncode == 0
    end = stream_last(nats_server)
    data = tmp_path / "replica"
    init(data)

    def health(target: str) -> int:
        with grpc.insecure_channel(target) as channel:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status

    with ServerProcess("--data-dir", str(data), "--follow-lag-max", "50", "--follow-stale-seconds", "5", env=ENV) as server:
        target = server.wait_serving()
        assert health(target) == health_pb2.HealthCheckResponse.NOT_SERVING  # no follower yet
        follower = follow(nats_server, data, "--batch-size", "5")
        try:
            wait_for(lambda: health(target) == health_pb2.HealthCheckResponse.SERVING, what="SERVING")
            assert position(data) >= end - 50
        finally:
            stop(follower)
        # A stopped follower vouches for nothing.
        wait_for(lambda: health(target) == health_pb2.HealthCheckResponse.NOT_SERVING, what="NOT_SERVING")
    # The follower's health changes ("health SERVING: …"), not the shutdown's drain notice.
    changes = [
        line.split("health ", 1)[1] for line in server.lines if " health " in line and "load balancers move away" not in line
    ]
    assert changes[0].startswith("NOT_SERVING: no follower status")
    assert any(c.startswith("NOT_SERVING: follower is") and "events behind the stream (bound 50)" in c for c in changes), (
        changes
    )
    assert any(c.startswith("SERVING: follower at stream sequence") for c in changes), changes
    assert changes[-1] == "NOT_SERVING: follower stopped\n", changes


# 8. The documented accounts -------------------------------------------------------------


def test_the_documented_accounts_give_each_role_what_it_needs_and_no_more(tmp_path, feed):
    """docs/REPLICATION.md's accounts block, as it is: the publisher publishes, a replica
    follows and bootstraps but cannot publish, the snapshot user stores snapshots."""
    path, _, _ = feed
    text = (ROOT / "docs" / "REPLICATION.md").read_text(encoding="utf-8")
    block = re.search(r"```conf\n(# nats-server.conf: accounts for sanction replication\n.*?)```", text, re.S)
    config = tmp_path / "accounts.conf"
    config.write_text(block.group(1), encoding="utf-8")
    roles = {role: f"{role}-secret" for role in ("publisher", "replica", "snapshots")}
    server = NatsServer(
        tmp_path / "jetstream", config=config, env={f"SANCTION_{role.upper()}_PASSWORD": pw for role, pw in roles.items()}
    ).start()
    try:

        def as_(role):
            return {"SANCTION_NATS_USER": role, "SANCTION_NATS_PASSWORD": roles[role]}

        part = tmp_path / "part.jsonl"
        part.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:300]), encoding="utf-8")
        assert publish(server, part, env=as_("publisher")).returncode == 0
        end = stream_last_as(server, "publisher", roles["publisher"])
        refused = publish(server, part, "--timeout", "3", env=as_("replica"))
        assert refused.returncode == 6, refused.stderr
        source = tmp_path / "source"
        init(source)
        follower = follow(server, source, env=as_("replica"))
        try:
            wait_for(lambda: position(source) == end)
        finally:
            stop(follower)
        snap = sanction("snapshot", "--nats", server.url, "--data-dir", str(source), env={**ENV, **as_("snapshots")})
        assert snap.returncode == 0, snap.stderr
        fresh = tmp_path / "fresh"
        new = follow(server, fresh, "--bootstrap", env=as_("replica"))
        try:
            wait_for(lambda: position(fresh) == end)
        finally:
            stop(new)
        assert content(digest(fresh)) == content(digest(source))
        assert stream_last_as(server, "publisher", roles["publisher"]) == end  # the replica published nothing
        assert "Publish Violation" in server.log.read_text()
    finally:
        server.stop()


def stream_last_as(server: NatsServer, user: str, password: str) -> int:
    import nats

    async def last() -> int:
        nc = await nats.connect(server.url, user=user, password=password)
        try:
            return (await nc.jetstream().stream_info("SANCTION_FEED")).state.last_seq
        finally:
            await nc.close()

    return asyncio.run(last())


# 9. A publisher killed mid-feed, run again ---------------------------------------------


def test_a_publisher_killed_mid_feed_and_run_again_publishes_each_line_once_in_order(tmp_path, nats_server, feed):
    path, _, clean = feed
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanction_service",
            "publish",
            "--nats",
            nats_server.url,
            "--window",
            "4",
            "--data-dir",
            str(tmp_path),
            "--rejects",
            str(tmp_path / "rejects"),
            str(path),
        ],
        env=_env(ENV),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: first.poll() is not None or stream_last_or_zero(nats_server) > 500, every=0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = stream_last(nats_server)
    assert 0 < killed_at < len(lines), "the kill did not land mid-feed"
    again = publish(nats_server, path)
    assert again.returncode == 0, again.stderr
    assert f"{len(lines) - killed_at} published" in again.stdout and f"{killed_at} duplicates" in again.stdout
    assert stream_last(nats_server) == len(lines)
    data = tmp_path / "replica"
    init(data)
    follower = follow(nats_server, data)
    try:
        wait_for(lambda: position(data) == len(lines))
    finally:
        stop(follower)
    assert content(digest(data)) == clean  # every line once, in feed order


def stream_last_or_zero(server: NatsServer) -> int:
    try:
        return stream_last(server)
    except Exception:  # the stream does not exist yet
        return 0


# 10. TLS and a token -------------------------------------------------------------------


def test_tls_and_token_settings_reach_nats(tmp_path, feed):
    from test_security import _cert, _write

    ca_key, ca_cert = _cert("test CA", None, None, ca=True)
    ca, _ = _write(tmp_path / "ca", ca_key, ca_cert)
    server_cert, server_key = _write(tmp_path / "server", *_cert("127.0.0.1", ca_key, ca_cert.subject, ca=False, san_ip=True))
    client_cert, client_key = _write(tmp_path / "client", *_cert("replica", ca_key, ca_cert.subject, ca=False))
    config = tmp_path / "tls.conf"
    config.write_text(
        f'tls {{ cert_file: "{server_cert}", key_file: "{server_key}", ca_file: "{ca}", verify: true }}\n'
        'authorization { token: "s3cret-token" }\n',
        encoding="utf-8",
    )
    server = NatsServer(tmp_path / "jetstream", config=config).start()
    try:
        path, _, _ = feed
        part = tmp_path / "part.jsonl"
        part.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:200]), encoding="utf-8")
        secure = {
            "SANCTION_NATS_TLS_CA": ca,
            "SANCTION_NATS_TLS_CERT": client_cert,
            "SANCTION_NATS_TLS_KEY": client_key,
            "SANCTION_NATS_TOKEN": "s3cret-token",
        }
        plain = publish(server, part, "--timeout", "3")
        assert plain.returncode == 6, plain.stderr
        wrong = publish(server, part, "--timeout", "3", env={**secure, "SANCTION_NATS_TOKEN": "wrong"})
        assert wrong.returncode == 6, wrong.stderr
        published = publish(server, part, env=secure)
        assert published.returncode == 0 and "200 published" in published.stdout, published.stderr
        data = tmp_path / "replica"
        init(data)
        follower = follow(server, data, env=secure)
        try:
            wait_for(lambda: position(data) == 200)
        finally:
            stop(follower)
    finally:
        server.stop()


def test_the_embedded_default_never_loads_nats():
    """serve, load and the replica health rule work without the NATS client."""
    code = (
        "import sys; import sanction_service.cli, sanction_service.grpc_api.server, sanction_service.loaders.feed; "
        "import sanction_service.replication.position, sanction_service.replication.status; "
        "assert 'nats' not in sys.modules, 'nats imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env({}), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
