"""Short version of tests/crash_harness.py: SIGKILL the loader (plain and --bulk) and a
server inside ApplyEvents at random points, re-run, and land on the clean load's exact
state; after every kill the store finds every probe a listing in force names, or (an
interrupted bulk load) refuses to open."""

import random
from datetime import date

from crash_harness import clean_load, killed_loads, killed_servers
from sanction_service.loaders import synth


def test_loader_bulk_loader_and_server_killed_at_random_points_end_in_the_clean_state(tmp_path):
    feed = tmp_path / "feed.jsonl"
    synth.write_feed(feed, 5, 8000, start=date.today())
    probes = list(synth.generate_probes(5, 8000, start=date.today()))
    clean, _ = clean_load(tmp_path, feed)
    rnd = random.Random(5)

    killed, record, asked = killed_loads(tmp_path, feed, 4, clean["data_version"], rnd, probes)
    assert killed == clean
    assert sum(k.interrupted for k in record) >= 3, record  # the kills landed while the loader wrote
    assert asked > 1000

    bulk_killed, bulk_record, _ = killed_loads(tmp_path, feed, 2, clean["data_version"], rnd, probes, bulk=True)
    assert bulk_killed == clean
    assert sum(k.incomplete for k in bulk_record) >= 1, bulk_record  # a kill left a store that had to fail closed

    served, server_versions = killed_servers(tmp_path, feed, 2, rnd)
    assert served == clean, server_versions
