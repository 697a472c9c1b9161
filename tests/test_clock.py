"""The day a check answers for is Shanghai's, whatever time zone the server's machine is in.

A server in a data centre set to UTC-11 or UTC+14 sees another calendar day than Shanghai
for most hours of the day; if any path used the machine's local date, the default travel
date and the accepted window (yesterday .. today + 366) would shift by a day, and a
listing that starts today in Shanghai could be answered ALLOW. Each case runs a real
server process with TZ set.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import list_person, make_ric
from processes import ServerProcess, sanction
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip
from test_processes import write_feed

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERSON = make_ric("110105", "19800101", 321)
FLIGHT = Trip("FLIGHT")


@pytest.mark.parametrize("zone", ["Pacific/Pago_Pago", "Pacific/Kiritimati"])
def test_default_day_and_accepted_window_are_shanghais_in_any_machine_time_zone(tmp_path, zone):
    data_dir = tmp_path / "data"
    assert sanction("init", "--data-dir", str(data_dir)).returncode == 0
    today = datetime.now(SHANGHAI).date()
    # Restricted from today (Shanghai) on: a server a day behind would answer ALLOW.
    feed = write_feed(tmp_path / "feed.jsonl", [list_person("L1", PERSON, listed_on=today.isoformat())])
    assert sanction("load", "--data-dir", str(data_dir), str(feed)).returncode == 0

    with ServerProcess("--data-dir", str(data_dir), env={"TZ": zone}) as server:
        with RestrictionClient(server.wait_serving(), timeout=5) as client:
            passenger = Passenger("RESIDENT_ID", PERSON)
            outcome = client.check(passenger, FLIGHT)
            if datetime.now(SHANGHAI).date() != today:
                pytest.skip("Shanghai's midnight passed during the test")
            assert (outcome.travel_date, outcome.decision) == (today, "DENY")
            assert client.check(passenger, FLIGHT, today - timedelta(days=1)).decision == "ALLOW"
            assert client.check(passenger, FLIGHT, today + timedelta(days=366)).decision == "DENY"
            for out_of_window in (today - timedelta(days=2), today + timedelta(days=367)):
                with pytest.raises(ServiceError) as refused:
                    client.check(passenger, FLIGHT, out_of_window)
                assert refused.value.code == "INVALID_ARGUMENT" and "travel_date" in str(refused.value)
