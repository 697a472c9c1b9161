"""The Node.js example (clients/node/check.js: @grpc/grpc-js and @grpc/proto-loader loading
proto/ at run time) against a real server: for every kind of answer its CheckResponse is
the Python client's (decision, restricted, the matches' listing ids, masked document,
data_version, and every other field, as `sanction check --json` prints it). Skipped, with
the reason, only when Node.js or the example's npm packages are not installed (`make test`
runs `npm ci` in clients/node when it can)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from processes import ROOT, _env
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip
from test_cli import EXEMPTED, LIFTED, LISTED, PASSPORT, REP, serve_world

from sanction_service.cli import EXIT_DENY, EXIT_INVALID, EXIT_UNAVAILABLE, outcome_json

NODE_DIR = ROOT / "clients" / "node"
CASES = [
    # (what, Passenger, Trip or None, the check.js options for them)
    ("listed, flight", Passenger("RESIDENT_ID", LISTED), Trip("FLIGHT"), ["--number", LISTED, "--mode", "FLIGHT"]),
    (
        "listed, D-train second class",
        Passenger("RESIDENT_ID", LISTED),
        Trip("RAIL", "D301", "SECOND"),
        ["--number", LISTED, "--mode", "RAIL", "--train", "D301", "--rail-class", "second"],
    ),
    (
        "listed, ship first class",
        Passenger("RESIDENT_ID", LISTED),
        Trip("SHIP", ship_class="FIRST"),
        ["--number", LISTED, "--mode", "SHIP", "--ship-class", "FIRST"],
    ),
    (
        "bound passport",
        Passenger("PASSPORT", PASSPORT, "CHN"),
        Trip("FLIGHT"),
        ["--document-type", "PASSPORT", "--number", PASSPORT, "--country", "CHN", "--mode", "FLIGHT"],
    ),
    (
        "exempted for flights",
        Passenger("RESIDENT_ID", EXEMPTED, name="王芳"),
        Trip("FLIGHT"),
        ["--number", EXEMPTED, "--name", "王芳", "--mode", "FLIGHT"],
    ),
    (
        "legal representative, G train",
        Passenger("RESIDENT_ID", REP, name="李四"),
        Trip("RAIL", "G1234"),
        ["--number", REP, "--name", "李四", "--mode", "RAIL", "--train", "G1234"],
    ),
    ("lifted, no trip", Passenger("RESIDENT_ID", LIFTED), None, ["--number", LIFTED]),
]


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("Node.js is not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.skip(
            "clients/node has no node_modules: `make test` runs `npm ci` there, which could not reach the npm registry here"
        )
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from serve_world(tmp_path_factory)


def check_js(node: str, target: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [node, "check.js", "--target", target, *options],
        cwd=NODE_DIR,
        env=_env(None),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("what, passenger, trip, options", CASES, ids=[c[0] for c in CASES])
def test_node_answers_equal_the_python_clients(node, world, what, passenger, trip, options):
    result = check_js(node, world["target"], *options)
    assert result.returncode == 0, result.stderr
    from_node = json.loads(result.stdout)
    with RestrictionClient(world["target"], timeout=5) as client:
        from_python = client.check(passenger, trip)
    assert from_node["decision"] == from_python.decision
    assert from_node["restricted"] is from_python.restricted
    assert [m["listing_id"] for m in from_node["matches"]] == [m.listing_id for m in from_python.matches]
    assert from_node["masked_document"] == from_python.masked_document
    assert from_node["data_version"] == from_python.data_version
    assert from_node == outcome_json(from_python)  # and every other field


def test_node_errors_and_exit_codes_are_those_of_sanction_check(node, world):
    bad = check_js(node, world["target"], "--number", LISTED[:-1] + "0")
    with RestrictionClient(world["target"], timeout=5) as client, pytest.raises(ServiceError) as python:
        client.check(Passenger("RESIDENT_ID", LISTED[:-1] + "0"))
    assert bad.returncode == EXIT_INVALID and python.value.code == "INVALID_ARGUMENT"
    assert python.value.message in bad.stderr and len(bad.stderr.splitlines()) == 1
    deny = check_js(node, world["target"], "--number", LISTED, "--mode", "FLIGHT", "--exit-code")
    assert deny.returncode == EXIT_DENY
    nobody = check_js(node, "127.0.0.1:1", "--number", LISTED, "--timeout", "2")
    assert nobody.returncode == EXIT_UNAVAILABLE and "UNAVAILABLE" in nobody.stderr
