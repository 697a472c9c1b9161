"""Start-up to SERVING: wall time from spawning `sanction serve` to its health turning
SERVING (the log line written right after), with the persisted prefilter, on the
BENCH_SIZE dataset. Three starts; prints each and writes benchmarks/results/startup.json.

    BENCH_SIZE=6000000 .venv/bin/python benchmarks/startup.py
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from common import bench_size, header, write_result  # noqa: E402
from dataset import ensure_dataset  # noqa: E402
from processes import ServerProcess  # noqa: E402


def main() -> None:
    size = bench_size()
    data = ensure_dataset(size)
    starts = []
    for _ in range(3):
        started = time.monotonic()
        with ServerProcess("--data-dir", str(data)) as server:
            server.wait_serving(timeout=900)
            took = time.monotonic() - started
            how = next((line.split("prefilter ", 1)[1].strip() for line in server.lines if "SERVING at" in line), "")
        starts.append({"seconds": round(took, 3), "prefilter": how})
        print(f"SERVING after {took:.2f} s ({how})")
    write_result(f"startup-{size}", {**header(size), "starts": starts})


if __name__ == "__main__":
    main()
