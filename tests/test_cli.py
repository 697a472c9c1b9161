"""The `sanction` command as people and scripts meet it, in real processes against a real
server: every user mistake is one line on stderr naming what is wrong and what is
accepted, with its documented exit code (cli.EXIT_*, README "Exit codes"), never a
traceback; `--json` carries every field of the answer; the tables show the answer;
the help texts list the accepted values and name their environment variables."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import event, iso, list_org, list_person, make_ric, make_uscc
from processes import ROOT, ServerProcess, _env, sanction
from sanction.v1 import admin_pb2
from sanction.v1 import restriction_pb2 as pb
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip

from sanction_service import cli

PEPPER_HEX = "5a" * 32
ENV = {"SANCTION_PEPPER": PEPPER_HEX}
LISTED = make_ric("110105", "19800101", 123)
EXEMPTED = make_ric("440305", "19900520", 86)
REP = make_ric("310115", "19850312", 82)
LIFTED = make_ric("320102", "19750505", 17)
CLEAN = make_ric("440305", "19900909", 88)
PASSPORT = "E12345678"


def write_feed(path, events) -> str:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    return str(path)


def serve_world(tmp_path_factory):
    """A store with a listed person (with a bound passport), an exempted one, an
    organisation's legal representative and a lifted listing, served by a real server
    (a generator for module-scoped fixtures, here and in tests/test_node_client.py)."""
    tmp = tmp_path_factory.mktemp("cli")
    feed = write_feed(
        tmp / "feed.jsonl",
        [
            list_person(
                "L-LISTED",
                LISTED,
                case_number="(2024)京0105执1号",
                extra=[{"type": "PASSPORT", "number": PASSPORT, "country": "CHN"}],
            ),
            list_person("L-EXEMPT", EXEMPTED, name="王芳", case_number="(2024)粤0305执89号"),
            event(
                "EXEMPT",
                "L-EXEMPT",
                document={"type": "RESIDENT_ID", "number": EXEMPTED},
                modes=["FLIGHT"],
                valid_from=iso(-10),
                valid_to=iso(300),
                reference="(2024)粤0305执89号之一",
            ),
            list_org("L-ORG", make_uscc(), [("LEGAL_REPRESENTATIVE", "李娜", REP)]),
            list_person("L-LIFTED", LIFTED, name="赵六"),
            event("DELIST", "L-LIFTED", reason="SETTLED", effective_on=iso(-5)),
        ],
    )
    data = tmp / "data"
    loaded = sanction("load", "--data-dir", str(data), "--create", "--no-progress", feed, env=ENV)
    assert loaded.returncode == 0, loaded.stderr
    with ServerProcess("--data-dir", str(data), env=ENV) as server:
        target = server.wait_serving()
        yield {"target": target, "data": data, "tmp": tmp}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from serve_world(tmp_path_factory)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return sanction(*args, env={**ENV, **(env or {})}, timeout=60)


def one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The command failed with `code` and exactly one stderr line holding every fragment."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- usage errors: 64


@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ["check", "--number", LISTED, "--mode", "RAIL", "--train", "D301", "--rail-class", "ECONOMY"],
            ["--rail-class", "'ECONOMY'", "SECOND", "SOFT_SLEEPER"],
        ),
        (["check", "--number", LISTED, "--document-type", "DRIVER"], ["--document-type", "'DRIVER'", "RESIDENT_ID"]),
        (["check", "--number", LISTED, "--mode", "BUS"], ["--mode", "FLIGHT, RAIL, SHIP"]),
        (["check", "--number", LISTED, "--mode", "SHIP", "--ship-class", "DECK"], ["--ship-class", "FOURTH"]),
        (["check", "--number", LISTED, "--date", "2024-13-01"], ["--date", "YYYY-MM-DD"]),
        (["check", "--number", LISTED, "--timeout", "0"], ["--timeout", "at least"]),
        (["check", "--mode", "FLIGHT"], ["--number", "required"]),
        (["digest", "--log-level", "bogus"], ["--log-level", "'bogus'", "DEBUG, INFO, WARNING, ERROR, CRITICAL"]),
        (["load", "--batch-size", "0", "feed.jsonl"], ["--batch-size", "at least 1"]),
        (["synth", "--listings", "many", "--out", "x.jsonl"], ["--listings", "whole number"]),
        (["frobnicate"], ["'frobnicate'", "check", "stats"]),
        ([], ["COMMAND"]),
        (["stats", "--no-such-flag"], ["--no-such-flag"]),
        (["check", "--number", LISTED, "--tls-ca", "/nonexistent/ca.pem"], ["TLS", "/nonexistent/ca.pem"]),
    ],
)
def test_a_usage_error_is_one_line_and_exit_64(args, fragments):
    one_line_error(run(*args), cli.EXIT_USAGE, *fragments)


# --------------------------------------------------------------------------- environment: 78


@pytest.mark.parametrize(
    "variable, value, command, accepted",
    [
        ("SANCTION_METRICS_PORT", "abc", ["stats"], "a whole number from 0 to 65535"),
        ("SANCTION_METRICS_PORT", "abc", ["serve", "--data-dir", "/nonexistent"], "a whole number from 0 to 65535"),
        ("SANCTION_LOG_LEVEL", "bogus", ["check", "--number", LISTED], "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SANCTION_PIN_CPUS", "maybe", ["init", "--data-dir", "/nonexistent"], "on or off"),
        ("SANCTION_PREFILTER_ERROR_RATE", "2", ["digest"], "greater than 0 and less than 1"),
        ("SANCTION_WORKERS", "-1", ["synth", "--out", "x.jsonl"], "at least 1"),
    ],
)
def test_a_bad_environment_variable_is_one_line_naming_it_and_exit_78(variable, value, command, accepted):
    line = one_line_error(run(*command, env={variable: value}), cli.EXIT_CONFIG, variable, repr(value), accepted)
    assert line.startswith("sanction: ")


def test_version_is_answered_even_with_a_bad_environment():
    """On call, "which version is this" comes before fixing the environment."""
    done = run("--version", env={"SANCTION_METRICS_PORT": "abc"})
    assert done.returncode == 0 and done.stdout.startswith("sanction ")


# --------------------------------------------------------------------------- store and files: 2


def test_digest_of_a_backup_without_its_pepper_says_so_and_exits_2(world, tmp_path):
    backup = tmp_path / "backup"
    made = run("backup", "--data-dir", str(world["data"]), str(backup))
    assert made.returncode == 0, made.stderr
    # The backup holds data.mdb only: no pepper file beside it, and none in the environment.
    bare = sanction("digest", "--data-dir", str(backup), env={"SANCTION_PEPPER": ""})
    one_line_error(bare, cli.EXIT_STORE, "pepper", str(backup))
    keyed = run("digest", "--data-dir", str(backup))
    assert keyed.returncode == 0 and json.loads(keyed.stdout)["data_version"] == 6


def test_missing_feed_and_unusable_destinations_exit_2(world, tmp_path):
    one_line_error(
        run("load", "--data-dir", str(world["data"]), str(tmp_path / "missing.jsonl")),
        cli.EXIT_STORE,
        "no feed file",
        "missing.jsonl",
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    one_line_error(
        run("backup", "--data-dir", str(world["data"]), str(tmp_path / "full")), cli.EXIT_STORE, "not an empty directory"
    )
    one_line_error(
        run("synth", "--listings", "5", "--out", str(tmp_path / "no" / "dir" / "f.jsonl")), cli.EXIT_STORE, "cannot write"
    )
    one_line_error(run("digest", "--data-dir", str(tmp_path / "nothing")), cli.EXIT_STORE, "nothing")


# --------------------------------------------------------------------------- closed pipe: 141


def test_a_closed_pipe_ends_quietly_with_141(world):
    proc = subprocess.Popen(
        [sys.executable, "-m", "sanction_service", "lookup", "--target", world["target"], "--number", LISTED],
        cwd=ROOT,
        env=_env(ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before anything is written, as with `| head -0`
    stderr = proc.stderr.read()
    assert proc.wait(60) == cli.EXIT_PIPE
    assert stderr == ""


# --------------------------------------------------------------------------- answers and service errors


def test_service_errors_are_one_line_with_their_exit_codes(world, tmp_path):
    target = ["--target", world["target"]]
    one_line_error(
        run("check", *target, "--number", LISTED[:-1] + "0"), cli.EXIT_INVALID, "INVALID_ARGUMENT", "document.number"
    )
    one_line_error(run("check", *target, "--number", LISTED, "--date", "2020-01-01"), cli.EXIT_INVALID, "travel_date")
    one_line_error(run("listing", *target, "NO-SUCH-LISTING"), cli.EXIT_NOT_FOUND, "NOT_FOUND")
    one_line_error(run("stats", "--target", "127.0.0.1:1", "--timeout", "1"), cli.EXIT_UNAVAILABLE, "UNAVAILABLE")


def test_without_a_token_the_exit_code_is_77(world, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"clients": [{"name": "ops", "token": "s3cret-token-0123", "roles": ["check"]}]}))
    with ServerProcess("--data-dir", str(world["data"]), "--tokens-file", str(tokens), env=ENV) as server:
        target = server.wait_serving()
        one_line_error(run("check", "--target", target, "--number", LISTED), cli.EXIT_NO_PERMISSION, "UNAUTHENTICATED")
        one_line_error(
            run("stats", "--target", target, "--token", "s3cret-token-0123"), cli.EXIT_NO_PERMISSION, "PERMISSION_DENIED"
        )
        allowed = run("check", "--target", target, "--number", CLEAN, env={"SANCTION_TOKEN": "s3cret-token-0123"})
        assert allowed.returncode == 0 and allowed.stdout.startswith("ALLOW"), allowed.stderr


def test_enums_are_case_insensitive_and_exit_code_reports_deny(world):
    target = ["--target", world["target"]]
    allow = run(
        "check", *target, "--number", LISTED, "--mode", "rail", "--train", "D301", "--rail-class", "second", "--exit-code"
    )
    assert allow.returncode == 0 and allow.stdout.startswith("ALLOW"), allow.stderr
    deny = run("check", *target, "--number", LISTED, "--mode", "Flight", "--exit-code", "--document-type", "resident_id")
    assert deny.returncode == cli.EXIT_DENY and deny.stdout.startswith("DENY"), deny.stderr
    assert run("check", *target, "--number", LISTED, "--mode", "FLIGHT").returncode == 0  # no --exit-code
    ship = run("check", *target, "--number", LISTED, "--mode", "ship", "--ship-class", "ship_first", "--exit-code")
    assert ship.returncode == cli.EXIT_DENY, ship.stderr


def proto_names(message) -> list[str]:
    return [f.name for f in message.DESCRIPTOR.fields]


def test_check_json_has_every_field_of_the_answer(world):
    answer = json.loads(
        run(
            "check",
            "--target",
            world["target"],
            "--document-type",
            "passport",
            "--number",
            PASSPORT,
            "--country",
            "CHN",
            "--mode",
            "FLIGHT",
            "--json",
        ).stdout
    )
    assert list(answer) == proto_names(pb.CheckResponse)
    assert answer["decision"] == "DENY" and answer["travel_date"] == iso()
    (match,) = answer["matches"]
    assert list(match) == proto_names(pb.ListingMatch)
    assert match["matched_document"] == LISTED[:10] + "****" + LISTED[-4:]
    assert match["listed_name"] == "张伟" and match["expires_on"] is None and match["lifted_on"] is None

    exempt = json.loads(run("check", "--target", world["target"], "--number", EXEMPTED, "--mode", "FLIGHT", "--json").stdout)
    assert exempt["decision"] == "ALLOW" and exempt["restricted"] is True
    assert exempt["matches"][0]["exemption_reference"] == "(2024)粤0305执89号之一"
    with RestrictionClient(world["target"], timeout=5) as client:
        typed = client.check(Passenger("RESIDENT_ID", EXEMPTED), Trip("FLIGHT"))
    assert typed.matches[0].exemption_reference == "(2024)粤0305执89号之一" and typed.travel_date.isoformat() == iso()


def test_lookup_listing_and_stats_json_are_stable_snake_case_with_every_field(world):
    target = ["--target", world["target"]]
    lookup = json.loads(run("lookup", *target, "--number", LIFTED, "--json").stdout)
    assert list(lookup) == proto_names(admin_pb2.LookupPersonResponse)
    (lifted,) = lookup["listings"]
    assert list(lifted) == proto_names(pb.ListingMatch)
    assert (lifted["active"], lifted["lifted_reason"], lifted["lifted_on"]) == (False, "SETTLED", iso(-5))
    assert lifted["exemption_applied"] is False and lifted["role"] == "SUBJECT"  # zeros and enums as names

    listing = json.loads(run("listing", *target, "L-ORG", "--json").stdout)
    assert list(listing) == proto_names(admin_pb2.Listing)
    assert listing["list_type"] == "CONSUMPTION_RESTRICTION" and listing["expires_on"] is None
    assert listing["restricted_persons"][0]["role"] == "LEGAL_REPRESENTATIVE"
    assert listing["exemptions"] == [] and listing["lifted_on"] is None and listing["data_version"] == 6

    stats = json.loads(run("stats", *target, "--json").stdout)
    assert list(stats) == proto_names(admin_pb2.Stats)
    assert stats["active_listings_by_type"] == {"DISHONEST": 2, "CONSUMPTION_RESTRICTION": 1}
    assert set(stats["refused_checks_by_mode"]) == {"FLIGHT", "RAIL", "SHIP"}
    assert stats["delistings_by_reason"]["SETTLED"] == 1 and stats["delistings_by_reason"]["EXPIRED"] == 0
    assert isinstance(stats["data_version"], int) and stats["voluntary_performances"] == 0


def test_tables_for_people(world):
    target = ["--target", world["target"]]
    lookup = run("lookup", *target, "--document-type", "PASSPORT", "--number", PASSPORT, "--country", "CHN").stdout
    head, columns, row = lookup.splitlines()
    assert head.startswith("E1*****78: 1 listing") and columns.split()[:3] == ["LISTING", "TYPE", "ROLE"]
    assert row.split()[:3] == ["L-LISTED", "DISHONEST", "SUBJECT"] and "active" in row
    assert LISTED[:10] + "****" in row  # listed under the bound resident ID

    listing = run("listing", *target, "L-EXEMPT").stdout
    assert re.search(r"^status +active$", listing, re.MULTILINE)
    assert "(2024)粤0305执89号之一" in listing and "FLIGHT" in listing

    stats = run("stats", *target).stdout
    assert re.search(r"^active listings +3$", stats, re.MULTILINE)
    assert re.search(r"^  SETTLED +1$", stats, re.MULTILINE)
    assert "{" not in stats

    exempt = run("check", *target, "--number", EXEMPTED, "--mode", "FLIGHT").stdout
    assert exempt.startswith("ALLOW") and "[exempted: (2024)粤0305执89号之一]" in exempt


# --------------------------------------------------------------------------- help texts


def subparsers() -> dict:
    return cli.build_parser()._subparsers._group_actions[0].choices


def test_every_subcommand_has_a_description_with_its_exit_codes():
    for name, parser in subparsers().items():
        if name == "serve":
            continue  # the serve subparser is being reworked on its own branch
        assert parser.description, f"sanction {name} has no description"
        documented = {int(n) for n in re.findall(r"\b(\d+) ", parser.description.split("Exit codes:")[1])}
        assert documented <= set(cli.EXIT_CODES[name]), (name, documented)


def test_help_lists_accepted_values_and_names_environment_variables_one_way():
    for name, parser in subparsers().items():
        for action in parser._actions:
            text = action.help or ""
            for variable in re.findall(r"SANCTION_[A-Z_]+", text):
                assert f"[{variable}" in text or f"set {variable}" in text, (name, action.dest, text)
    check = subparsers()["check"]
    helps = {a.dest: a.help for a in check._actions}
    for dest, values in [
        ("rail_class", cli.RAIL_CLASSES),
        ("ship_class", cli.SHIP_CLASSES),
        ("mode", cli.MODES),
        ("document_type", cli.DOCUMENT_TYPES),
    ]:
        assert all(v in helps[dest] for v in values), dest
    digest = {a.dest: a.help for a in subparsers()["digest"]._actions}
    assert all(level in digest["log_level"] for level in cli.LOG_LEVELS)
    assert "[SANCTION_LISTEN]" in helps["target"] and "[SANCTION_TOKEN]" in helps["token"]
