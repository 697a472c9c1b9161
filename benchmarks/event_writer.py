"""The event path's two halves timed apart, in this process, without the pipeline between
them: the parse work (`ledger.prepare_line` of every line, what a parse worker or the
writer does with a range) and the writer alone (`Ledger.apply` of the prepared items into
a fresh store, garbage collector off as in `load_feed`), per event and per kind of line.

    .venv/bin/python benchmarks/event_writer.py --size 50000 --rounds 5

The feed is feed_load.py's (`sanction synth --seed 1`, cached in data/feedload-<size>/).
Process CPU time (time.process_time) per event: the best of --rounds for the writer,
one pass for the parse. For profiles, run it under `python -m cProfile -s tottime`.
"""

from __future__ import annotations

import argparse
import gc
import marshal
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from feed_load import PEPPER_HEX, feed_for  # noqa: E402

from sanction_service.identity import DocumentKeys, pepper_fingerprint  # noqa: E402
from sanction_service.ledger import FOLLOW, PREPARED, Ledger, prepare_line  # noqa: E402
from sanction_service.store import Store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=50_000, help="listings of the synthetic feed (%(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="writer runs, the best counts (%(default)s)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="as `sanction load` (%(default)s)")
    args = parser.parse_args()
    pepper = bytes.fromhex(PEPPER_HEX)
    key_of = DocumentKeys(pepper)
    lines = feed_for(args.size).read_bytes().splitlines(keepends=True)

    gc.disable()
    start = time.process_time()
    items = [item for n, raw in enumerate(lines, 1) if (item := prepare_line(n, raw, key_of)) is not None]
    parse = time.process_time() - start
    start = time.process_time()
    items = marshal.loads(marshal.dumps(items))  # as the writer gets a worker's range
    passing = time.process_time() - start
    events = len(items)
    kinds = {"LIST (prepared)": 0, "DELIST/PERFORM/EXTEND": 0, "other (decoded by the writer)": 0}
    for item in items:
        kind = item[1]
        kinds[
            "LIST (prepared)"
            if kind == PREPARED
            else "DELIST/PERFORM/EXTEND"
            if kind == FOLLOW
            else "other (decoded by the writer)"
        ] += 1

    per_kind = {name: 0.0 for name in kinds}
    methods = {
        "_apply_prepared": "LIST (prepared)",
        "_apply_follow": "DELIST/PERFORM/EXTEND",
        "_apply_line": "other (decoded by the writer)",
    }

    def timed(name, method):
        def run(self, txn, tally, item):
            t = time.process_time()
            outcome = method(self, txn, tally, item)
            per_kind[methods[name]] += time.process_time() - t
            return outcome

        return run

    best = None
    work = Path(tempfile.mkdtemp(prefix="event-writer-"))
    try:
        for r in range(args.rounds):
            store = Store(work / f"store-{r}", pepper_fingerprint(pepper), create=True, map_size=1 << 32)
            ledger = Ledger(store, pepper)
            start = time.process_time()
            outcomes = list(ledger.apply(iter(items), batch_size=args.batch_size))
            elapsed = time.process_time() - start
            store.close()
            assert len(outcomes) == events
            best = elapsed if best is None else min(best, elapsed)
        # One more run with each kind's method timed (the timing adds ~0.3 us per call).
        for name in methods:
            setattr(Ledger, name, timed(name, getattr(Ledger, name)))
        store = Store(work / "store-kinds", pepper_fingerprint(pepper), create=True, map_size=1 << 32)
        list(Ledger(store, pepper).apply(iter(items), batch_size=args.batch_size))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"feed of {args.size:,} listings: {events:,} events")
    print(f"  parse (prepare_line):      {parse / events * 1e6:6.2f} us per event")
    print(f"  marshal dumps + loads:     {passing / events * 1e6:6.2f} us per event")
    print(f"  writer (Ledger.apply):     {best / events * 1e6:6.2f} us per event (best of {args.rounds})")
    for name, n in kinds.items():
        if n:
            print(
                f"    {name:30s} {n:7,} lines, {per_kind[name] / n * 1e6:6.2f} us each, "
                f"{per_kind[name] / events * 1e6:5.2f} us per event of the feed"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
