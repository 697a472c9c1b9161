"""Issue 9's target table at BENCH_SIZE: every figure against its target, met or missed.

    BENCH_SIZE=200000 .venv/bin/python benchmarks/targets.py [--before CHECKOUT_OF_82670d0]

`make bench` runs it last: it reads what the steps before it wrote and measures the rest
itself, then prints one table and writes benchmarks/results/targets-<size>.json (command,
BENCH_SIZE, machine and load average, commit, timestamp, every round of every side).

Read from earlier steps (same BENCH_SIZE, refused when the file is of another size):
  - micro-<size>.json (benchmarks/test_micro.py): the in-process whole check, request
    message to serialized response through the columnar path, batches of 1000 at 99 %
    never listed, in process CPU time (`ids_per_cpu_second`), prefilter on and off; and
    the listed-hit decode (`test_hit_decode[typed]` when the benchmark is parametrized
    by decoder, else `test_hit_decode`; median).
  - load-<size>.json (benchmarks/load.py): prefilter on vs off warm, cold vs warm pages,
    1 vs 2 workers (and pinned) for batches of 100; reported, no target.
Measured here, the sides alternating in rounds (the order rotates every round), medians:
  - BatchCheckRestriction of 1000 and of 100, one request in flight, from this process
    against `sanction serve --pin-cpus`, vs pipelined EXISTS of the same queries' keys
    (precomputed) on redis-server, with redis-py's pure-Python reply parser and with
    hiredis (what a Redis user would run; skipped, saying so, without hiredis). Server
    and client CPU per ID beside each rate.
  - unary CheckRestriction from h2load (8 connections x 4 streams = 32 in flight, one
    never-listed request) against `sanction serve --workers 2 --pin-cpus` and against
    benchmarks/echo_server.py with the same set-up, answering the same CheckResponse:
    calls per second and p99 latency.
  - `sanction load --bulk` of the dataset's feed into an empty store under /usr/bin/time -v
    (wall, peak RSS of the largest process), via feed_load.run_load; up to
    --event-digest-max listings the same feed is also loaded event by event and the two
    `sanction digest`s compared.
  - the event-by-event path at --feed-size listings (50 000; not BENCH_SIZE: at 6 M it
    would take an hour) by benchmarks/feed_load.py, bulk and event stores' digests
    compared; with --before (make bench BEFORE=...) the 82670d0 checkout is loaded
    alternately and the ratio is measured; without it the ratio is against the figure
    recorded in benchmarks/results/feedload-50000.json (another run: labelled so).
Targets named "at 6 M" are the issue's; at a smaller BENCH_SIZE the bulk-load wall target
is scaled by the number of events (labelled "scaled") and the RSS one kept as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(HERE)]

from common import RESULTS, bench_size, header, log, percentiles, write_result  # noqa: E402
from dataset import ensure_dataset, mix, probe_documents  # noqa: E402
from feed_load import run_load  # noqa: E402
from load import (  # noqa: E402
    POOL,
    CpuMeter,
    RedisServer,
    Server,
    batch_bytes,
    drive_calls,
    exists_pipeline,
    hiredis_available,
    new_channel,
    raw_method,
    redis_missing,
    request_bytes,
    run_h2load,
)
from processes import ServerProcess  # noqa: E402
from sanction.v1 import restriction_pb2 as pb  # noqa: E402

FULL_SIZE = 6_000_000
FULL_EVENTS = 7_146_277  # the feed of 6 M listings (synth --seed 1), BENCHMARKS.md
RECORDED_BEFORE = RESULTS / "feedload-50000.json"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def median_of(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


# --------------------------------------------------------------------------- read from earlier steps


def read_json(path: Path, size: int) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, f"{path.name} missing (run `make bench`)"
    data = json.loads(path.read_text())
    found = data.get("sanction", data).get("bench_size")
    if found != size:
        return None, f"{path.name} is of BENCH_SIZE {found}, not {size}"
    return data, ""


def micro_figures(size: int) -> dict:
    data, why = read_json(RESULTS / f"micro-{size}.json", size)
    if data is None:
        return {"missing": why}
    by_name = {b["name"]: b for b in data["benchmarks"]}
    out: dict = {"file": f"micro-{size}.json", "timestamp": data["sanction"]["timestamp"]}
    for path in ("fast", "fast_prefilter_off", "reference"):
        b = by_name.get(f"test_batch_request_to_response_bytes[{path}]")
        if b:
            out[f"batch1000_{path}"] = {
                "ids_per_cpu_second": b["extra_info"].get("ids_per_cpu_second"),
                "cpu_ms_median": b["extra_info"].get("cpu_ms_median"),
            }
    # The check path's decode: parametrized as [typed] where the checker reads typed records
    # (the [reference] beside it is the json decode it replaced), plain otherwise.
    for name in ("test_hit_decode[typed]", "test_hit_decode"):
        b = by_name.get(name)
        if b:
            out["hit_decode_us_median"] = round(b["stats"]["median"] * 1e6, 3)
            out["hit_decode_benchmark"] = name
            break
    for which in ("on", "off"):
        b = by_name.get(f"test_check_many[{which}]")
        if b:
            out[f"check_many_prefilter_{which}_ids_per_second_median"] = b["extra_info"].get("ids_per_second_median")
    return out


def load_figures(size: int) -> dict:
    data, why = read_json(RESULTS / f"load-{size}.json", size)
    if data is None:
        return {"missing": why}
    out: dict = {"file": f"load-{size}.json", "timestamp": data["timestamp"]}
    for label in ("prefilter_on", "prefilter_off"):
        part = data.get(label, {})
        warm = part.get("warm", {})
        out[label] = {k: warm[k]["ids_per_second"] for k in ("unary_c8", "batch100", "batch1000") if k in warm}
        for cold in ("cold_unary_sequential", "cold_batch100_sequential"):
            if cold in part:
                c = part[cold]
                out[label][cold] = {
                    "cold_ids_per_second": c["cold"]["ids_per_second"],
                    "warm_ids_per_second": c["warm"]["ids_per_second"],
                    "first_request_ms": c["cold"]["first_request_ms"],
                    "cold_over_warm": c["cold_over_warm"],
                    "eviction_worked": c["eviction"]["eviction_worked"],
                }
    workers = data.get("workers", {})
    out["workers_batch100_2procs_c2"] = {
        k: workers[k]["batch100_2procs_c2"]["ids_per_second"] for k in ("1", "2", "2_pinned") if k in workers
    }
    return out


# --------------------------------------------------------------------------- measured here


def batches_vs_redis(d: Path, rounds: int, warmup: float, seconds: float) -> dict:
    """BatchCheckRestriction (1 in flight) vs pipelined EXISTS, both parsers, alternating."""
    missing = redis_missing()
    if missing:
        return {"skipped": missing}
    probes = probe_documents(d)
    pool = mix(probes, POOL, 0.99, seed=2)
    out: dict = {
        "server": "sanction serve --pin-cpus (one process on CPU 0)",
        "client": "this process, 1 in flight",
        "rounds": rounds,
        "seconds": seconds,
    }
    parsers = ["python"] + (["hiredis"] if hiredis_available() else [])
    if "hiredis" not in parsers:
        out["hiredis"] = "not installed: `make bench` installs it (pip install hiredis); measured without only"
    with Server(d, "--pin-cpus") as server, RedisServer(d) as redis_server, contextlib.ExitStack() as stack:
        out["redis"] = redis_server.info
        keys = [redis_server.key_of(doc) for doc in pool]
        clients = {p: exists_pipeline(redis_server.client(p)) for p in parsers}
        channel = new_channel(server.target)
        call = raw_method(channel, "BatchCheckRestriction")
        try:
            for size in (1000, 100):
                payloads = {"sanction": batch_bytes(pool, size)}
                key_batches = [keys[i : i + size] for i in range(0, len(keys) - size + 1, size)]
                # Shown beside the figures: the service's DENY count and Redis's hits on batch 0.
                answer = pb.BatchCheckResponse.FromString(call(payloads["sanction"][0], timeout=60))
                listed = sum(i.result.decision == pb.DENY for i in answer.items)
                hits = sum(clients["python"](key_batches[0]))
                sides = {"sanction": (lambda p: call(p, timeout=60), payloads["sanction"], server.pid)}
                for p in parsers:
                    sides[f"redis_{p}"] = (clients[p], key_batches, redis_server.pid)
                # The floor under the service: gRPC and protobuf alone, the same requests
                # answered with the service's answer to the first, by one pinned process.
                echo, echo_call = start_batch_echo(call(payloads["sanction"][0], timeout=60), stack)
                sides["echo"] = (lambda p, echo_call=echo_call: echo_call(p, timeout=60), payloads["sanction"], echo.proc.pid)
                rows: dict[str, list[dict]] = {name: [] for name in sides}
                names = list(sides)
                for r in range(rounds):
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        fn, items, pid = sides[name]
                        with CpuMeter(pid) as cpu:
                            lat, took = drive_calls(fn, items, 1, warmup, seconds)
                        ids = len(lat) * size
                        row = {
                            "ids_per_second": round(ids / took),
                            "p50_ms": percentiles(lat)["p50_ms"],
                            "p99_ms": percentiles(lat)["p99_ms"],
                            **cpu.result,
                        }
                        row["server_cpu_us_per_id"] = round(cpu.result["server_cpu_cores"] * took / ids * 1e6, 2)
                        row["client_cpu_us_per_id"] = round(cpu.result["client_cpu_cores"] * took / ids * 1e6, 2)
                        rows[name].append(row)
                        log(
                            f"[targets] batch{size} round {r + 1} {name:15s} {row['ids_per_second']:>9,} IDs/s "
                            f"p99 {row['p99_ms']:.2f} ms  cpu srv {row['server_cpu_cores']:.2f} "
                            f"cli {row['client_cpu_cores']:.2f} other {row['other_cpu_cores']:.2f}"
                        )
                medians = {name: {k: median_of(rs, k) for k in rs[0]} for name, rs in rows.items()}
                out[f"batch{size}"] = {
                    "rounds": rows,
                    "medians": medians,
                    "deny_in_first_batch": listed,
                    "redis_hits_in_first_batch": hits,
                    "ratios": {
                        p: round(medians["sanction"]["ids_per_second"] / medians[f"redis_{p}"]["ids_per_second"], 3)
                        for p in parsers
                    },
                    "echo_ratios": {
                        p: round(medians["echo"]["ids_per_second"] / medians[f"redis_{p}"]["ids_per_second"], 3)
                        for p in parsers
                    },
                }
        finally:
            channel.close()
    return out


def start_batch_echo(answer: bytes, stack: contextlib.ExitStack):
    """benchmarks/echo_server.py, one worker on CPU 0, answering every batch with `answer`;
    stopped (and its channel closed) when `stack` closes."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    single = pb.CheckResponse().SerializeToString()
    (tmp / "unary.bin").write_bytes(single)
    (tmp / "batch.bin").write_bytes(answer)
    echo = ServerProcess(
        command=[
            sys.executable,
            str(HERE / "echo_server.py"),
            "--response",
            str(tmp / "unary.bin"),
            "--batch-response",
            str(tmp / "batch.bin"),
            "--workers",
            "1",
            "--pin-cpus",
        ]
    )
    stack.callback(echo.stop)
    channel = new_channel(echo.wait_serving(timeout=60, workers=1))
    stack.callback(channel.close)
    return echo, raw_method(channel, "BatchCheckRestriction")


def unary_vs_echo(d: Path, rounds: int, warmup: float, seconds: float) -> dict:
    """h2load, 32 in flight, against 2 pinned sanction workers and 2 pinned echo workers, alternating."""
    if not shutil.which("h2load"):
        return {"skipped": "h2load is not installed (make bench-tools: apt-get install -y nghttp2-client)"}
    probes = probe_documents(d)
    body = request_bytes(probes.never[0])
    out: dict = {
        "in_flight": "h2load -c 8 -m 4 (32)",
        "request": "one never-listed RESIDENT_ID, FLIGHT",
        "rounds": rounds,
        "seconds": seconds,
    }
    with tempfile.TemporaryDirectory() as tmp, Server(d, "--pin-cpus", workers=2) as sanction:
        channel = new_channel(sanction.target)
        try:
            answer = raw_method(channel, "CheckRestriction")(body, timeout=10)
        finally:
            channel.close()
        response = Path(tmp) / "response.bin"
        response.write_bytes(answer)
        echo = ServerProcess(
            command=[sys.executable, str(HERE / "echo_server.py"), "--response", str(response), "--workers", "2", "--pin-cpus"]
        )
        try:
            echo_target = echo.wait_serving(timeout=60, workers=2)
            channel = new_channel(echo_target)
            try:
                same = raw_method(channel, "CheckRestriction")(body, timeout=10) == answer
            finally:
                channel.close()
            out["echo_answer_equals_sanction_answer"] = same
            sides = {"sanction": (sanction.target, sanction.pid), "echo": (echo_target, echo.proc.pid)}
            rows: dict[str, list[dict]] = {name: [] for name in sides}
            for r in range(rounds):
                for name in ("sanction", "echo") if r % 2 == 0 else ("echo", "sanction"):
                    target, pid = sides[name]
                    res = run_h2load(target, body, 8, 4, warmup, seconds, pid)
                    if "error" in res:
                        raise RuntimeError(f"h2load against {name}: {res}")
                    row = {
                        "calls_per_second": res["requests_per_second"],
                        "p50_ms": res["latency"].get("p50_ms"),
                        "p99_ms": res["latency"].get("p99_ms"),
                        "failed": res.get("failed", 0) + res.get("errored", 0),
                        "server_cpu_cores": res["server_cpu_cores"],
                        "client_cpu_cores": res["client_cpu_cores"],
                        "other_cpu_cores": res["other_cpu_cores"],
                    }
                    rows[name].append(row)
                    log(
                        f"[targets] unary round {r + 1} {name:8s} {row['calls_per_second']:>9,.0f} calls/s "
                        f"p99 {row['p99_ms']} ms  cpu srv {row['server_cpu_cores']:.2f} cli {row['client_cpu_cores']:.2f}"
                        f" other {row['other_cpu_cores']:.2f}"
                    )
        finally:
            echo.stop()
    medians = {name: {k: median_of(rs, k) for k in rs[0]} for name, rs in rows.items()}
    out.update(
        rounds=rows,
        medians=medians,
        calls_ratio=round(medians["sanction"]["calls_per_second"] / medians["echo"]["calls_per_second"], 3),
        p99_ratio=round(medians["sanction"]["p99_ms"] / medians["echo"]["p99_ms"], 3),
    )
    return out


def bulk_load(d: Path, size: int, event_digest_max: int) -> dict:
    """`sanction load --bulk` of the dataset's feed into an empty store (feed_load.run_load)."""
    feed = d / "feed.jsonl"
    work = Path(tempfile.mkdtemp(prefix="targets-bulk-", dir=d.parent))
    workers = max(1, (os.cpu_count() or 2) - 1)
    try:
        out = {"feed": str(feed), "parse_workers": workers, "bulk": run_load(ROOT, feed, "bulk", work, None, workers)}
        log(
            f"[targets] bulk load of {out['bulk']['events']:,} events: {out['bulk']['wall_s']} s wall, "
            f"peak RSS {out['bulk']['peak_rss_mb']} MB"
        )
        if size <= event_digest_max:
            out["event"] = run_load(ROOT, feed, "event", work, None, workers)
            out["digest_compared_at"] = size
            out["same_digest"] = out["event"]["digest"] == out["bulk"]["digest"]
            log(f"[targets] event-by-event load of the same feed: {out['event']['wall_s']} s; same digest {out['same_digest']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def event_path(size: int, feed_size: int, rounds: int, before: Path | None) -> dict:
    """benchmarks/feed_load.py at feed_size, with --before when given; its JSON read back."""
    name = f"targets-{size}-feedload-{feed_size}"
    command = [
        sys.executable,
        str(HERE / "feed_load.py"),
        "--size",
        str(feed_size),
        "--rounds",
        str(rounds),
        "--out",
        name,
        *(["--before", str(before)] if before else []),
    ]
    log(f"[targets] {' '.join(command)}")
    done = subprocess.run(command, cwd=ROOT)
    data = json.loads((RESULTS / f"{name}.json").read_text())
    out = {
        "command": " ".join(command),
        "exit_status": done.returncode,
        "events": data["events"],
        "same_digest": data["same_digest"],
        "medians": data["medians"],
    }
    after = data["medians"]["after event"]
    if before:
        ref = data["medians"]["before event"]
        out["before_source"] = f"measured in this run: {before}"
        out["before_digest_equal"] = data.get("before_digest_equal")
    elif RECORDED_BEFORE.is_file():
        recorded = json.loads(RECORDED_BEFORE.read_text())
        ref = recorded["medians"]["before event"]
        out["before_source"] = (
            f"recorded, not measured in this run: {RECORDED_BEFORE.relative_to(ROOT)} "
            f"({recorded['events']:,} events, {recorded['timestamp']}, load average "
            f"{recorded['machine']['load_average'][0]:.1f})"
        )
        if recorded["events"] != data["events"]:
            out["before_source"] += f"; a feed of {recorded['events']:,} events, not {data['events']:,}"
    else:
        return out
    out["before_event"] = ref
    out["events_per_s_ratio"] = round(after["events_per_s"] / ref["events_per_s"], 2)
    out["cpu_per_event_ratio"] = round(ref["cpu_us_per_event"] / after["cpu_us_per_event"], 2)
    return out


# --------------------------------------------------------------------------- the table


def table(size: int, r: dict) -> list[tuple[str, str, str, str]]:
    """(figure, target, measured, met/missed) rows."""
    rows = []
    m = r["micro"]
    fast = m.get("batch1000_fast", {}).get("ids_per_cpu_second")
    rows.append(
        (
            "in-process whole check, batch 1000, 99 % never listed (IDs per CPU-second)",
            ">= 500 k",
            f"{fast / 1000:.0f} k" if fast else m.get("missing", "not measured"),
            met(fast >= 500_000 if fast else None),
        )
    )
    b = r["batches_vs_redis"]
    for size_, need in ((1000, 2.0), (100, 1.0)):
        part = b.get(f"batch{size_}")
        for parser in ("python", "hiredis"):
            label = f"BatchCheckRestriction {size_}/request, 1 in flight, vs Redis pipelined EXISTS ({parser} parser)"
            if not part or parser not in part["ratios"]:
                why = b.get("skipped") or (b.get("hiredis") if parser == "hiredis" else "not measured")
                rows.append((label, f">= {need:.1f}x", why, "n/a"))
                continue
            ratio = part["ratios"][parser]
            med = part["medians"]
            rows.append(
                (
                    label,
                    f">= {need:.1f}x",
                    f"{ratio:.2f}x ({med['sanction']['ids_per_second']:,.0f} vs "
                    f"{med[f'redis_{parser}']['ids_per_second']:,.0f} IDs/s)",
                    met(ratio >= need),
                )
            )
    u = r["unary_vs_echo"]
    if "medians" in u:
        s, e = u["medians"]["sanction"], u["medians"]["echo"]
        rows.append(
            (
                "unary CheckRestriction, 2 workers pinned, h2load 32 in flight: calls/s vs echo",
                ">= 0.9x",
                f"{u['calls_ratio']:.2f}x ({s['calls_per_second']:,.0f} vs {e['calls_per_second']:,.0f})",
                met(u["calls_ratio"] >= 0.9),
            )
        )
        rows.append(
            (
                "same: p99 vs echo's",
                "<= 1.3x",
                f"{u['p99_ratio']:.2f}x ({s['p99_ms']:.2f} vs {e['p99_ms']:.2f} ms)",
                met(u["p99_ratio"] <= 1.3),
            )
        )
    else:
        rows.append(("unary CheckRestriction vs echo", ">= 0.9x, p99 <= 1.3x", u.get("skipped", "not measured"), "n/a"))
    bl = r["bulk_load"]["bulk"]
    wall_target = 60.0 if size == FULL_SIZE else round(60.0 * bl["events"] / FULL_EVENTS, 1)
    scaled = "" if size == FULL_SIZE else f" (60 s at 6 M, scaled to {bl['events']:,} events)"
    rows.append(
        (
            f"sanction load --bulk of {size:,} listings into an empty store: wall",
            f"<= {wall_target} s{scaled}",
            f"{bl['wall_s']:.1f} s ({bl['events_per_s']:,} events/s)",
            met(bl["wall_s"] <= wall_target),
        )
    )
    rows.append(
        (
            "same: peak RSS (largest process)",
            "<= 2 GB" + ("" if size == FULL_SIZE else " (the 6 M target)"),
            f"{bl['peak_rss_mb']:,.0f} MB",
            met(bl["peak_rss_mb"] <= 2048),
        )
    )
    same_here = r["bulk_load"].get("same_digest")
    ev = r["event_path"]
    digest_note = (
        f"at {size:,} listings: {'equal' if same_here else 'DIFFERENT'}"
        if same_here is not None
        else f"not compared at {size:,}"
    )
    digest_note += f"; at {r['feed_size']:,} listings (feed_load.py): {'equal' if ev.get('same_digest') else 'DIFFERENT'}"
    ok = bool(ev.get("same_digest")) and same_here is not False
    rows.append(("same: sanction digest equal to the event-by-event path's", "equal", digest_note, met(ok)))
    if "events_per_s_ratio" in ev:
        after = ev["medians"]["after event"]
        rows.append(
            (
                f"event-by-event path, {ev['events']:,} events: events/s vs 82670d0",
                ">= 5x",
                f"{ev['events_per_s_ratio']:.2f}x ({after['events_per_s']:,.0f} vs "
                f"{ev['before_event']['events_per_s']:,.0f} events/s; CPU per event {after['cpu_us_per_event']} vs "
                f"{ev['before_event']['cpu_us_per_event']} us); before: {ev['before_source']}",
                met(ev["events_per_s_ratio"] >= 5),
            )
        )
    else:
        rows.append(("event-by-event path vs 82670d0", ">= 5x", "no before figure (pass BEFORE=)", "n/a"))
    hit = m.get("hit_decode_us_median")
    rows.append(
        (
            f"listed hit: decode of the listing record, median ({m.get('hit_decode_benchmark', 'test_hit_decode')})",
            "<= 4 us",
            f"{hit:.2f} us" if hit else m.get("missing", "not measured"),
            met(hit <= 4 if hit else None),
        )
    )
    return rows


def also_lines(r: dict) -> list[str]:
    """The figures the issue asks for beside the targets (no target of their own)."""
    lines = []
    m = r["micro"]
    on, off = m.get("batch1000_fast", {}), m.get("batch1000_fast_prefilter_off", {})
    ref = m.get("batch1000_reference", {})
    if on and off:
        lines.append(
            f"in process, batch 1000 (IDs per CPU-second): columnar path prefilter on {on['ids_per_cpu_second']:,}"
            f", off {off['ids_per_cpu_second']:,}; reference path {ref.get('ids_per_cpu_second', 0):,}"
        )
    lf = r["load"]
    if "missing" in lf:
        lines.append(f"load.py figures: {lf['missing']}")
    else:
        for label in ("prefilter_on", "prefilter_off"):
            p = lf.get(label, {})
            if not p:
                continue
            lines.append(
                f"{label}, warm, end to end (IDs/s): unary 8 in flight {p.get('unary_c8', 0):,.0f}, "
                f"batch 100 {p.get('batch100', 0):,.0f}, batch 1000 {p.get('batch1000', 0):,.0f}"
            )
            for cold in ("cold_unary_sequential", "cold_batch100_sequential"):
                c = p.get(cold)
                if c:
                    lines.append(
                        f"{label}, {cold}: cold {c['cold_ids_per_second']:,.0f} vs warm "
                        f"{c['warm_ids_per_second']:,.0f} IDs/s (cold/warm time {c['cold_over_warm']}x, first "
                        f"request {c['first_request_ms']:.1f} ms, eviction worked {c['eviction_worked']})"
                    )
        w = lf.get("workers_batch100_2procs_c2", {})
        if w:
            lines.append(
                "batch 100, 2 client processes x 2 in flight (IDs/s): "
                + ", ".join(f"{k.replace('_', ' ')} worker(s) {v:,.0f}" for k, v in w.items())
                + (f"; 2 vs 1: {w['2'] / w['1']:.2f}x" if "1" in w and "2" in w else "")
                + (f", 2 pinned vs 1: {w['2_pinned'] / w['1']:.2f}x" if "1" in w and "2_pinned" in w else "")
            )
    b = r["batches_vs_redis"]
    for size_ in (1000, 100):
        part = b.get(f"batch{size_}")
        if part and part.get("echo_ratios"):
            lines.append(
                f"batch {size_}, the gRPC floor (echo server, same messages, no checks) vs Redis: "
                + ", ".join(f"{ratio:.2f}x ({parser})" for parser, ratio in part["echo_ratios"].items())
            )
        if part:
            for name, med in part["medians"].items():
                lines.append(
                    f"batch {size_}, {name}: {med['ids_per_second']:,.0f} IDs/s, p99 {med['p99_ms']:.2f} ms, "
                    f"CPU per ID server {med['server_cpu_us_per_id']:.2f} us + client "
                    f"{med['client_cpu_us_per_id']:.2f} us"
                )
    u = r["unary_vs_echo"]
    if "medians" in u:
        for name, med in u["medians"].items():
            lines.append(
                f"unary h2load, {name}: {med['calls_per_second']:,.0f} calls/s, p50 {med['p50_ms']} ms, "
                f"p99 {med['p99_ms']} ms, server {med['server_cpu_cores']:.2f} cores, h2load "
                f"{med['client_cpu_cores']:.2f}"
            )
    bl = r["bulk_load"]["bulk"]
    lines.append(
        f"bulk load: {bl['cpu_s']:.1f} s CPU = {bl['cpu_us_per_event']} us per event (writer "
        f"{bl['writer_us_per_event']}, parse workers {bl['workers_us_per_event']})"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="listings (default BENCH_SIZE or 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per side and round")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--before", type=Path, help="a checkout of 82670d0 for the event-path ratio")
    parser.add_argument("--feed-size", type=int, default=50_000, help="listings of the event-path comparison")
    parser.add_argument("--feed-rounds", type=int, default=3)
    parser.add_argument(
        "--event-digest-max",
        type=int,
        default=1_000_000,
        help="up to this BENCH_SIZE the bulk store's digest is also compared with an event-by-event load",
    )
    args = parser.parse_args()
    size = bench_size() if args.size is None else args.size
    started = time.perf_counter()
    d = ensure_dataset(size)
    result: dict = {
        **header(size),
        "data_dir": str(d),
        "feed_size": args.feed_size,
        "settings": {"rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup},
    }
    result["micro"] = micro_figures(size)
    result["load"] = load_figures(size)
    result["batches_vs_redis"] = batches_vs_redis(d, args.rounds, args.warmup, args.seconds)
    result["unary_vs_echo"] = unary_vs_echo(d, args.rounds, args.warmup, args.seconds)
    result["bulk_load"] = bulk_load(d, size, args.event_digest_max)
    result["event_path"] = event_path(size, args.feed_size, args.feed_rounds, args.before)
    rows = table(size, result)
    result["targets"] = [{"figure": f, "target": t, "measured": v, "status": s} for f, t, v, s in rows]
    result["also"] = also_lines(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    began = os.environ.get("BENCH_STARTED")
    if began:
        result["make_bench_seconds"] = round(time.time() - float(began))
    result["machine_load_average_end"] = os.getloadavg()
    path = write_result(f"targets-{size}", result)

    print(
        f"\nIssue 9 targets at BENCH_SIZE={size:,} (commit {result['commit']}, load average at start "
        f"{result['machine']['load_average'][0]:.1f}, at end {result['machine_load_average_end'][0]:.1f})"
    )
    for f, t, v, s in rows:
        print(f"  {s:7s} {f}\n          target {t}; measured {v}")
    print("\nAlso measured (no target):")
    for line in result["also"]:
        print("  " + line)
    took = f"targets.py {result['seconds']:.0f} s"
    if "make_bench_seconds" in result:
        took = f"make bench {result['make_bench_seconds']} s in all, " + took
    print(f"\n{took}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
