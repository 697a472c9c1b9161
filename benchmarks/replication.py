"""Replication: publish -> visible DENY on three followers, and the replicas' apply rate.

Starts a real `nats-server -js` (loopback, temporary store), publishes a synthetic feed
of BENCH_SIZE listings with `sanction publish`, and starts three replicas, each a
`sanction follow` plus a `sanction serve --follow-lag-max` on its own store. Measures:

- apply rate: each follower's events/s while catching up on the published feed (the three
  run at once, as they would after a publish of a big feed), and for comparison a
  `sanction load` of the same feed alone;
- publish -> visible DENY: a new LIST event (a person nobody has listed) is published
  to the stream as `sanction publish` publishes it (same subject and headers), and a
  client per replica asks its server for that person's FLIGHT purchase every
  millisecond until it is DENY; the time from just before the publish to each DENY, over
  --events events, p50/p99 per replica and overall. Meanwhile a background client per
  replica keeps checking batches of 100 unlisted documents ("while checks run").

Everything shares this machine's cores, so the figures include the three followers, three
servers, NATS and the clients competing for them.

    BENCH_SIZE=20000 .venv/bin/python benchmarks/replication.py --events 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from common import bench_size, header, log, percentiles, write_result  # noqa: E402
from natsserver import NatsServer  # noqa: E402
from processes import ServerProcess, _env, sanction  # noqa: E402

PEPPER_HEX = "4b" * 32
ENV = {"SANCTION_PEPPER": PEPPER_HEX}
REPLICAS = 3


def status(data: Path) -> dict:
    try:
        return json.loads((data / "follower.status.json").read_text())
    except (OSError, ValueError):
        return {}


def new_person_events(count: int, seed: int = 99) -> list[dict]:
    """LIST events for persons no synthetic feed lists (another region and birth year)."""
    from stdnum.cn import ric

    events = []
    for n in range(count):
        body = f"65010219{n // 900 % 100:02d}0101{n % 900 + 100:03d}"[:17]
        number = body + ric.calc_check_digit(body + "0")
        events.append(
            {
                "event_id": f"bench-{seed}-{n}",
                "type": "LIST",
                "occurred_at": "2026-11-01T09:00:00+08:00",
                "listing_id": f"BENCH-{seed}-{n}",
                "list_type": "DISHONEST",
                "case_number": f"(2026)新0102执{n}号",
                "court": "乌鲁木齐市天山区人民法院",
                "listed_on": "2025-01-01",
                "subject": {"kind": "PERSON", "name": "测试", "document": {"type": "RESIDENT_ID", "number": number}},
            }
        )
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100, help="events timed from publish to DENY (%(default)s)")
    parser.add_argument(
        "--background", type=int, default=1, help="background checking clients per replica, 0 for none (%(default)s)"
    )
    args = parser.parse_args()
    size = bench_size(20_000)
    from sanction_service.loaders import synth

    with tempfile.TemporaryDirectory(prefix="bench-replication-") as tmp:
        work = Path(tmp)
        nats = NatsServer(work / "jetstream").start()
        followers, servers = [], []
        try:
            feed = work / "feed.jsonl"
            events = synth.write_feed(feed, 1, size, start=date(2026, 11, 1))
            started = time.monotonic()
            published = sanction("publish", "--nats", nats.url, "--data-dir", str(work), str(feed), env=ENV, timeout=3600)
            assert published.returncode == 0, published.stderr
            publish_seconds = time.monotonic() - started
            log(published.stdout.strip(), f"({publish_seconds:.1f} s)")
            end = int(published.stdout.rsplit("sequence ", 1)[1].split()[0])

            # Baseline: the same feed through `sanction load` (event by event, batches of 500).
            local = work / "local"
            assert sanction("init", "--data-dir", str(local), env=ENV).returncode == 0
            started = time.monotonic()
            loaded = sanction(
                "load", "--data-dir", str(local), "--batch-size", "500", "--no-progress", str(feed), env=ENV, timeout=3600
            )
            assert loaded.returncode == 0, loaded.stderr
            load_rate = round(end / (time.monotonic() - started))
            log(f"sanction load of the same feed, alone: {load_rate} events/s (process start included)")

            replicas = [work / f"replica-{i}" for i in range(REPLICAS)]
            for data in replicas:
                assert sanction("init", "--data-dir", str(data), env=ENV).returncode == 0
            started = time.monotonic()
            for data in replicas:
                followers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "sanction_service",
                            "follow",
                            "--nats",
                            nats.url,
                            "--data-dir",
                            str(data),
                            "--metrics-port",
                            "0",
                        ],
                        env=_env(ENV),
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            first: dict[int, float] = {}
            done: dict[int, float] = {}
            while len(done) < REPLICAS:
                now = time.monotonic()
                for i, data in enumerate(replicas):
                    applied = status(data).get("applied_seq", 0)
                    if applied and i not in first:
                        first[i] = (now, applied)
                    if applied >= end and i not in done:
                        done[i] = now
                assert now - started < 3600, "followers did not catch up"
                time.sleep(0.01)
            apply_rates = [round((end - first[i][1]) / max(done[i] - first[i][0], 1e-9)) for i in range(REPLICAS)]
            log(f"apply: {end} events on {REPLICAS} followers at once; events/s per follower: {apply_rates}")

            for data in replicas:
                server = ServerProcess("--data-dir", str(data), "--follow-lag-max", "100", env=ENV)
                servers.append(server)
            targets = [server.wait_serving(timeout=600) for server in servers]
            visible, background = measure_visibility(nats.url, targets, args.events, args.background)
        finally:
            for server in servers:
                server.stop()
            for follower in followers:
                follower.terminate()
                follower.wait(30)
            nats.stop()

    per_replica = [percentiles(v) for v in visible]
    overall = percentiles([x for v in visible for x in v])
    log(f"publish -> visible DENY, all replicas: {overall}")
    for i, p in enumerate(per_replica):
        log(f"  replica {i}: {p}")
    log(f"background checks answered meanwhile: {background} (batches of 100)")
    path = write_result(
        f"replication-{size}" + ("" if args.background else "-no-background"),
        {
            **header(size),
            "feed_events": events,
            "stream_sequence": end,
            "publish": {"seconds": round(publish_seconds, 2), "events_per_second": round(end / publish_seconds)},
            "apply_events_per_second_per_follower": apply_rates,
            "local_load_events_per_second": load_rate,
            "publish_to_visible_deny": {"all": overall, "per_replica": per_replica},
            "background_clients_per_replica": args.background,
            "background_checks": background,
        },
    )
    log(f"written {path}")


def measure_visibility(url: str, targets: list[str], count: int, per_replica: int) -> tuple[list[list[float]], int]:
    from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip

    from sanction_service.events import content_digest
    from sanction_service.identity import pepper_fingerprint
    from sanction_service.replication.stream import MSG_ID_HEADER, PEPPER_HEADER

    fingerprint = pepper_fingerprint(bytes.fromhex(PEPPER_HEX))
    stop = threading.Event()
    answered = [0]

    def background(target: str) -> None:
        unlisted = [Passenger("PASSPORT", f"E{n:08d}", "CHN") for n in range(100)]
        with RestrictionClient(target, timeout=10) as client:
            while not stop.is_set():
                client.check_batch(unlisted, Trip("FLIGHT"))
                answered[0] += 1

    loaders = [threading.Thread(target=background, args=(t,), daemon=True) for t in targets for _ in range(per_replica)]
    for thread in loaders:
        thread.start()
    visible: list[list[float]] = [[] for _ in targets]
    clients = [RestrictionClient(t, timeout=10) for t in targets]

    async def run() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        for event in new_person_events(count):
            person = Passenger("RESIDENT_ID", event["subject"]["document"]["number"])
            assert all(c.check(person, Trip("FLIGHT")).decision == "ALLOW" for c in clients), "already listed"
            payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
            headers = {MSG_ID_HEADER: content_digest(event).hex(), PEPPER_HEADER: fingerprint}
            t0 = time.perf_counter()
            await js.publish("sanction.feed.LIST", payload, headers=headers)
            seen = await asyncio.gather(*(asyncio.to_thread(wait_deny, c, person, t0) for c in clients))
            for i, seconds in enumerate(seen):
                visible[i].append(seconds)
        await nc.close()

    try:
        asyncio.run(run())
    finally:
        stop.set()
        for thread in loaders:
            thread.join(30)
        for client in clients:
            client.close()
    return visible, answered[0]


def wait_deny(client, person, t0: float) -> float:
    from sanction_service.clients.sanction_client import Trip

    deadline = t0 + 30
    while time.perf_counter() < deadline:
        if client.check(person, Trip("FLIGHT")).decision == "DENY":
            return time.perf_counter() - t0
        time.sleep(0.001)
    raise AssertionError("a published listing was not denied within 30 s")


if __name__ == "__main__":
    main()
