"""Short version of tests/crash_harness.py: SIGKILL the loader and a server inside
ApplyEvents at random points, re-run, and land on the clean load's exact state."""

import random

from crash_harness import clean_load, killed_loads, killed_servers

from loaders import synth


def test_loader_and_server_killed_at_random_points_end_in_the_clean_state(tmp_path):
    feed = tmp_path / "feed.jsonl"
    synth.write_feed(feed, 5, 8000)
    clean, _ = clean_load(tmp_path, feed)
    rnd = random.Random(5)
    killed, versions = killed_loads(tmp_path, feed, 4, clean["data_version"], rnd)
    assert killed == clean
    assert sum(0 < v < clean["data_version"] for v in versions) >= 3, versions  # the kills landed mid-load
    served, server_versions = killed_servers(tmp_path, feed, 2, rnd)
    assert served == clean, server_versions
