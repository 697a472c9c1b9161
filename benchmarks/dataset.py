"""Benchmark datasets: a store of BENCH_SIZE synthetic listings, made once and cached.

`ensure_dataset(size)` builds data/bench-<size>/ with the real CLI, exactly as an operator
would, and returns the directory:

    sanction init  --data-dir D
    sanction synth --seed 1 --listings N --start 2026-11-01 --out D/feed.jsonl --probes D/probes.jsonl
    sanction load  --data-dir D [--bulk] D/feed.jsonl      (--bulk when this build has it)

then loads the store once through `Checker.warm_up()` so the persisted prefilter
(D/prefilter.bloom) is current and no server start has to build it. A finished dataset
is marked by D/bench.json (timings of each step); a directory without it (an interrupted
build) is deleted and built again. Progress goes to stderr: 6 M listings take minutes.

`probe_documents(D)` reads D/probes.jsonl and splits it into listed documents (expect
LISTED or ORG_PERSON) and never-listed ones (NEVER_LISTED); `mix(...)` draws a
deterministic query list with a given share of misses (99 % by default: nearly every
traveller is not on the list).

    BENCH_SIZE=200000 .venv/bin/python benchmarks/dataset.py      # build (or show) the dataset
    .venv/bin/python benchmarks/dataset.py --size 20000 --rebuild

Writes benchmarks/results/dataset-<size>.json (build timings, store and file sizes).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "gen")]

from common import ROOT, bench_size, header, log, write_result  # noqa: E402

SEED = 1
START = "2026-11-01"
DATA = ROOT / "data"
MARKER = "bench.json"
LISTED_EXPECT = ("LISTED", "ORG_PERSON")


class Doc(NamedTuple):
    type: str
    number: str
    country: str


class Probes(NamedTuple):
    listed: list[Doc]
    never: list[Doc]


def dataset_dir(size: int) -> Path:
    return DATA / f"bench-{size}"


def _sanction() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "sanction"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sanction_service"]


def _run(step: str, *args: str) -> float:
    log(f"[dataset] {step}: sanction {' '.join(args)}")
    started = time.perf_counter()
    # stderr is inherited: the loader's progress bar shows when stderr is a terminal.
    done = subprocess.run([*_sanction(), *args], cwd=ROOT, stdout=sys.stderr)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`sanction {' '.join(args)}` exited {done.returncode}")
    log(f"[dataset] {step} took {took:.1f} s")
    return took


def has_bulk_load() -> bool:
    out = subprocess.run([*_sanction(), "load", "--help"], cwd=ROOT, capture_output=True, text=True)
    return "--bulk" in out.stdout


def ensure_dataset(size: int | None = None, *, rebuild: bool = False) -> Path:
    """Return data/bench-<size>/ holding a loaded store of `size` listings, building it if needed."""
    size = bench_size() if size is None else size
    d = dataset_dir(size)
    if (d / MARKER).is_file() and (d / "data.mdb").is_file() and not rebuild:
        return d
    if d.exists():
        log(f"[dataset] removing incomplete or stale {d}")
        shutil.rmtree(d)
    d.mkdir(parents=True)
    log(f"[dataset] building {size:,} listings in {d}")
    began = time.perf_counter()
    timings = {"init_s": _run("init", "init", "--data-dir", str(d))}
    timings["synth_s"] = _run(
        "synth",
        "synth",
        "--seed",
        str(SEED),
        "--listings",
        str(size),
        "--start",
        START,
        "--out",
        str(d / "feed.jsonl"),
        "--probes",
        str(d / "probes.jsonl"),
    )
    bulk = has_bulk_load()
    timings["load_s"] = _run(
        "load" + (" (bulk)" if bulk else ""), "load", "--data-dir", str(d), *(["--bulk"] if bulk else []), str(d / "feed.jsonl")
    )
    started = time.perf_counter()
    how = warm_prefilter(d)
    timings["prefilter_s"] = round(time.perf_counter() - started, 2)
    log(f"[dataset] prefilter {how} in {timings['prefilter_s']:.1f} s")
    info = {
        "size": size,
        "seed": SEED,
        "start": START,
        "bulk_load": bulk,
        "prefilter": how,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - began, 1),
        **describe(d),
    }
    (d / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    log(f"[dataset] ready in {info['total_s']:.0f} s: {d}")
    return d


def open_checker(d: Path, *, use_prefilter: bool = True, store=None, pepper=None):
    """(store, pepper, checker) on the dataset, opened the way the server opens it."""
    from sanction_service.checker import Checker
    from sanction_service.grpc_api.server import open_store
    from sanction_service.settings import PREFILTER_FILE, Settings

    settings = Settings(data_dir=str(d))
    if store is None:
        store, pepper = open_store(settings)
    checker = Checker(
        store,
        pepper,
        prefilter_path=Path(d) / PREFILTER_FILE,
        error_rate=settings.prefilter_error_rate,
        use_prefilter=use_prefilter,
    )
    return store, pepper, checker


def warm_prefilter(d: Path) -> str:
    store, _, checker = open_checker(d)
    try:
        return checker.warm_up()
    finally:
        store.close()


def describe(d: Path) -> dict:
    """File sizes and counts (opens and closes the store)."""
    from sanction_service.grpc_api.server import open_store
    from sanction_service.settings import Settings

    store, _ = open_store(Settings(data_dir=str(d)))
    try:
        with store.read() as view:
            counts = {name: view.count(name) for name in ("listings", "persons_active", "persons_all")}
            seq = view.seq()
    finally:
        store.close()
    sizes = {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file()}
    return {"data_version": seq, "entries": counts, "file_bytes": sizes}


def probe_documents(d: Path) -> Probes:
    listed: list[Doc] = []
    never: list[Doc] = []
    with open(Path(d) / "probes.jsonl", encoding="utf-8") as f:
        for line in f:
            probe = json.loads(line)
            doc = probe["document"]
            item = Doc(doc["type"], doc["number"], doc.get("country", ""))
            if probe["expect"] in LISTED_EXPECT:
                listed.append(item)
            elif probe["expect"] == "NEVER_LISTED":
                never.append(item)
    if not listed or not never:
        raise RuntimeError(f"{d}/probes.jsonl has {len(listed)} listed and {len(never)} never-listed documents")
    return Probes(listed, never)


def mix(probes: Probes, n: int, miss_ratio: float = 0.99, seed: int = 0) -> list[Doc]:
    """n documents, round(n * miss_ratio) of them never listed, shuffled deterministically.

    Each pool is walked in a shuffled order (and only repeats once exhausted), so a long
    mix touches as many distinct documents, hence store pages, as the probes allow."""
    rng = random.Random(seed)
    misses = round(n * miss_ratio)

    def draw(pool: list[Doc], k: int) -> list[Doc]:
        order = pool[:]
        rng.shuffle(order)
        return [order[i % len(order)] for i in range(k)]

    out = draw(probes.never, misses) + draw(probes.listed, n - misses)
    rng.shuffle(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Build (once) the benchmark dataset of BENCH_SIZE listings.")
    parser.add_argument("--size", type=int, default=None, help="listings (default: BENCH_SIZE or 200000)")
    parser.add_argument("--rebuild", action="store_true", help="delete and build again")
    args = parser.parse_args()
    size = bench_size() if args.size is None else args.size
    d = ensure_dataset(size, rebuild=args.rebuild)
    info = json.loads((d / MARKER).read_text())
    probes = probe_documents(d)
    info["probes"] = {"listed": len(probes.listed), "never_listed": len(probes.never)}
    print(json.dumps(info, indent=2))
    path = write_result(f"dataset-{size}", {**header(size), "data_dir": str(d), "dataset": info})
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
