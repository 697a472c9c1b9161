"""The documentation against the code, so the two cannot drift apart:

- no tracked file points to a contract outside this repository;
- every feed example in docs/FEED.md loads through the real `sanction load` with the
  result written above it (applied, duplicate, or rejected with that field and reason),
  and the documented summary and rejects lines are what the loader prints;
- every rejection reason in the reason tables of docs/FEED.md and docs/DOCUMENTS.md is
  a text the code emits;
- the policy table of docs/DECISIONS.md names only classes the proto and policy.py define,
  covers every class, and agrees with `purchase_is_restricted`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest
from processes import ROOT, sanction
from sanction.v1 import restriction_pb2 as pb

from sanction_service import events, settings
from sanction_service.policy import RailClass, ShipClass, TravelMode, Trip, purchase_is_restricted
from sanction_service.settings import MAX_FEED_LINE_BYTES

DOCS = ROOT / "docs"
# Spelled in pieces so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "DOMAIN" + ".md")
PEPPER_HEX = "5a" * 32


# --------------------------------------------------------------------------- no outside contract


def test_no_tracked_file_points_outside_the_repository():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    offenders = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        offenders += [f"{name}: {word}" for word in FORBIDDEN if word.encode() in data]
    assert not offenders, "the contract lives in docs/; these still point elsewhere:\n" + "\n".join(offenders)


# --------------------------------------------------------------------------- markdown helpers


def fenced_blocks(text: str) -> list[tuple[int, str, list[str], str]]:
    """(line number of the opening fence, language, body lines, last non-blank line before it)."""
    lines = text.splitlines()
    blocks, before, i = [], "", 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language = lines[i][3:].strip()
            end = i + 1
            while not lines[end].startswith("```"):
                end += 1
            blocks.append((i + 1, language, lines[i + 1:end], before))
            before, i = "", end + 1
            continue
        if lines[i].strip():
            before = lines[i].strip()
        i += 1
    return blocks


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of every row of every table whose header line starts with `header`."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(header):
            inside = True
            continue
        if inside and line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        else:
            inside = False
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


# --------------------------------------------------------------------------- FEED.md examples

RESULT = re.compile(r"^Result: (applied|duplicate|rejected)(?: — (?:field `([^`]*)`|no field): `([^`]*)`)?\.$")


@dataclass(frozen=True)
class Example:
    where: int  # line of docs/FEED.md
    text: str  # one feed line
    status: str
    field: str
    reason: str


def feed_examples() -> list[Example]:
    examples = []
    for where, language, body, before in fenced_blocks((DOCS / "FEED.md").read_text(encoding="utf-8")):
        if language not in ("json", "jsonl"):
            continue
        result = RESULT.match(before)
        assert result, f"docs/FEED.md:{where}: a {language} example needs a 'Result: …' line right above it"
        status, field, reason = result.group(1), result.group(2) or "", result.group(3) or ""
        assert (status == "rejected") == bool(reason), f"docs/FEED.md:{where}: only rejections carry a reason"
        if language == "json":  # one event shown over several lines
            lines = [json.dumps(json.loads("\n".join(body)), ensure_ascii=False, separators=(",", ":"))]
        else:
            lines = [line for line in body if line.strip()]
        examples += [Example(where, line, status, field, reason) for line in lines]
    return examples


def documented_output() -> tuple[str, list[str]]:
    """The summary line and the rejects lines shown under 'Output' in docs/FEED.md."""
    text_blocks = [body for _, language, body, _ in fenced_blocks((DOCS / "FEED.md").read_text(encoding="utf-8"))
                   if language == "text"]
    summary = next(body[0] for body in text_blocks if re.match(r"\d+ lines: ", body[0]))
    rejects = next(body for body in text_blocks if body[0].startswith('{"line"'))
    return summary, rejects


def test_feed_examples_load_with_the_documented_results(tmp_path):
    examples = feed_examples()
    assert sum(e.status == "applied" for e in examples) >= 6, "the page should show every event type applied"
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(e.text + "\n" for e in examples), encoding="utf-8")
    rejects_path = tmp_path / "rejects.jsonl"
    run = sanction("load", "--data-dir", str(tmp_path / "store"), "--create", "--no-progress",
                   "--rejects", str(rejects_path), str(feed), env={"SANCTION_PEPPER": PEPPER_HEX})

    rejected = {n: (e.field, e.reason) for n, e in enumerate(examples, 1) if e.status == "rejected"}
    assert run.returncode == (1 if rejected else 0), run.stderr
    reject_lines = rejects_path.read_text(encoding="utf-8").splitlines()
    got = {r["line"]: (r["field"], r["reason"]) for r in map(json.loads, reject_lines)}
    for n in sorted(rejected.keys() | got.keys()):
        where = examples[n - 1].where
        assert got.get(n) == rejected.get(n), f"docs/FEED.md:{where}: documented {rejected.get(n)}, got {got.get(n)}"

    applied = sum(e.status == "applied" for e in examples)
    duplicates = sum(e.status == "duplicate" for e in examples)
    summary = (f"{len(examples)} lines: {applied} applied, {duplicates} duplicates, {len(rejected)} rejected; "
               f"data version {applied}")
    assert run.stdout.splitlines()[0] == summary

    documented_summary, documented_rejects = documented_output()
    assert documented_summary == summary, "update the summary shown under 'Output' in docs/FEED.md"
    for line in documented_rejects:
        assert line in reject_lines, f"docs/FEED.md shows a rejects line the loader does not write: {line}"


# --------------------------------------------------------------------------- reason tables

EMITTING_MODULES = ("sanction_service/events.py", "sanction_service/lifecycle.py", "sanction_service/ledger.py",
                    "sanction_service/identity.py", "sanction_service/text.py", "sanction_service/feedline.py",
                    "loaders/feed.py")


def emitted_texts() -> str:
    """The source of the modules that emit reasons, plus the texts they build from constants."""
    source = "\n".join((ROOT / name).read_text(encoding="utf-8") for name in EMITTING_MODULES)
    roles = ", ".join(sorted(r.value for r in events.ORGANIZATION_ROLES))
    built = [
        "must be one of " + ", ".join(sorted(events.DELIST_REASONS)),
        "must be " + roles,
        f"line longer than {MAX_FEED_LINE_BYTES} bytes",
        *(f"is longer than {value} characters" for name, value in vars(settings).items() if name.endswith("_CHARS")),
    ]
    return source + "\n" + "\n".join(built)


@pytest.mark.parametrize("page", ["FEED.md", "DOCUMENTS.md"])
def test_documented_reasons_are_texts_the_code_emits(page):
    emitted = emitted_texts()
    rows = table_rows((DOCS / page).read_text(encoding="utf-8"), "| field | reason |")
    assert len(rows) >= 10
    checked = 0
    for row in rows:
        reasons = ticked(row[1])
        if not reasons:
            continue  # "see DOCUMENTS.md"
        for fragment in re.split(r"<[^>]*>", reasons[0]):
            fragment = fragment.strip()
            if len(fragment) >= 3:
                assert fragment in emitted, f"docs/{page}: no code emits {reasons[0]!r}"
        checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------- DECISIONS.md policy table

TRAINS_BY_LETTER = {"G": "G1234", "D": "D301", "C": "C2001", "Z": "Z1", "T": "T109", "K": "K1", "Y": "Y1",
                    "L": "L1", "S": "S5"}


def policy_rows() -> list[tuple[str, list[str], list[str] | None, bool]]:
    """(mode, sample train numbers, classes or None for every class, restricted)."""
    rows = []
    for mode, train, classes, restricted in table_rows((DOCS / "DECISIONS.md").read_text(encoding="utf-8"),
                                                       "| mode | train number | class | restricted |"):
        trains = [TRAINS_BY_LETTER[letter] for letter in ticked(train)]
        if "digits only" in train:
            trains.append("1461")
        assert restricted in ("yes", "no"), restricted
        rows.append((mode, trains or [""], ticked(classes) or None, restricted == "yes"))
    return rows


def test_policy_table_names_only_classes_the_proto_and_policy_define():
    rows = policy_rows()
    assert {mode for mode, *_ in rows} == {m.value for m in TravelMode}
    for mode, _, classes, _ in rows:
        for name in classes or ():
            if mode == "RAIL":
                assert name in RailClass.__members__ and name in pb.RailClass.keys(), name
            else:
                assert mode == "SHIP", f"{mode} rows have no classes"
                assert name in ShipClass.__members__ and f"SHIP_{name}" in pb.ShipClass.keys(), name
    # And the two enums agree with each other, so the table cannot miss a class of either.
    assert set(pb.RailClass.keys()) - {"RAIL_CLASS_UNSPECIFIED"} == set(RailClass.__members__)
    assert {k.removeprefix("SHIP_") for k in pb.ShipClass.keys()} - {"CLASS_UNSPECIFIED"} == set(ShipClass.__members__)


def test_policy_table_agrees_with_policy_py_for_every_class():
    covered: dict[tuple[str, str], set] = {}
    for mode, trains, classes, restricted in policy_rows():
        for train in trains:
            if mode == "FLIGHT":
                assert purchase_is_restricted(Trip(TravelMode.FLIGHT)) is restricted
                continue
            enum = RailClass if mode == "RAIL" else ShipClass
            members = [enum[name] for name in classes] if classes else list(enum)
            for member in members:
                trip = (Trip(TravelMode.RAIL, train_number=train, rail_class=member) if mode == "RAIL"
                        else Trip(TravelMode.SHIP, ship_class=member))
                assert purchase_is_restricted(trip) is restricted, (mode, train, member.value)
                covered.setdefault((mode, train), set()).add(member)
            if mode == "RAIL" and classes is None:  # "the class may be left out"
                assert purchase_is_restricted(Trip(TravelMode.RAIL, train_number=train)) is restricted
    for (mode, train), members in covered.items():
        assert members == set(RailClass if mode == "RAIL" else ShipClass), f"{mode} {train}: table misses a class"
