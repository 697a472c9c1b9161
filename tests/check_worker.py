"""A checking process for the concurrency test: batches of random people until a stop
file appears; writes (number index, decision, data_version) per answer as JSON lines."""

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError  # noqa: E402


def main() -> int:
    target, people_file, stop_file, out_file, seed = sys.argv[1:6]
    people = Path(people_file).read_text().split()
    rnd = random.Random(int(seed))
    errors = 0
    with RestrictionClient(target, timeout=10) as client, open(out_file, "w") as out:
        while not Path(stop_file).exists():
            picks = [rnd.randrange(len(people)) for _ in range(50)]
            try:
                results = client.check_batch([Passenger("RESIDENT_ID", people[i]) for i in picks])
            except ServiceError as exc:
                errors += 1
                out.write(json.dumps({"error": exc.code}) + "\n")
                continue
            versions = {r.data_version for r in results if not isinstance(r, ServiceError)}
            out.write(json.dumps({"batch_versions": len(versions)}) + "\n")
            for i, r in zip(picks, results):
                if isinstance(r, ServiceError):
                    errors += 1
                    out.write(json.dumps({"error": r.code}) + "\n")
                else:
                    out.write(json.dumps([i, r.decision, r.data_version]) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
