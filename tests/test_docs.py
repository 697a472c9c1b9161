"""The documentation against the code, so the two cannot drift apart:

- no tracked file points to a contract outside this repository;
- every feed example in docs/FEED.md loads through the real `sanction load` with the
  result written above it (applied, duplicate, or rejected with that field and reason),
  and the documented summary and rejects lines are what the loader prints;
- every rejection reason in the reason tables of docs/FEED.md and docs/DOCUMENTS.md, every
  field violation of a check in docs/API.md and every rejection in docs/INPUT_LIMITS.md is
  a text the code emits;
- docs/INPUT_LIMITS.md states every fixed limit of settings.py with its value, and the
  other pages do not restate those numbers;
- the worked example of docs/DECISIONS.md (bindings, exemptions, `matched_document`) is
  what the real check pipeline answers on the store loaded from docs/FEED.md's feed;
- the exit status table of docs/FEED.md names the codes `sanction load` exits with, and
  README's "Exit codes" table those of every command (cli.EXIT_CODES);
- the policy table of docs/DECISIONS.md names only classes the proto and policy.py define,
  covers every class, and agrees with `purchase_is_restricted`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from datetime import date

import pytest
from processes import ROOT, sanction
from sanction.v1 import restriction_pb2 as pb

from sanction_service import cli, events, settings
from sanction_service.checker import Checker, CheckQuery
from sanction_service.grpc_api.convert import check_response, match_message
from sanction_service.identity import DocumentType, normalize, pepper_fingerprint
from sanction_service.policy import RailClass, ShipClass, TravelMode, Trip, purchase_is_restricted
from sanction_service.settings import MAX_FEED_LINE_BYTES
from sanction_service.store import Store

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
            blocks.append((i + 1, language, lines[i + 1 : end], before))
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


# --------------------------------------------------------------------------- links


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings."""
    found = set()
    for line in text.splitlines():
        heading = re.match(r"#+ (.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_links_between_the_pages_resolve():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an outside address
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.name}: link to missing {target}"
            if anchor:
                assert anchor in anchors(path.read_text(encoding="utf-8")), f"{page.name}: no heading #{anchor} in {path.name}"
            checked += 1
    assert checked >= 30


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
    text_blocks = [
        body for _, language, body, _ in fenced_blocks((DOCS / "FEED.md").read_text(encoding="utf-8")) if language == "text"
    ]
    summary = next(body[0] for body in text_blocks if re.match(r"\d+ lines: ", body[0]))
    rejects = next(body for body in text_blocks if body[0].startswith('{"line"'))
    return summary, rejects


@dataclass(frozen=True)
class LoadedFeed:
    examples: list[Example]
    run: subprocess.CompletedProcess
    rejects_path: object
    store_dir: object


@pytest.fixture(scope="module")
def loaded_feed(tmp_path_factory) -> LoadedFeed:
    """docs/FEED.md's examples, in page order, loaded by the real `sanction load` into a new store."""
    tmp_path = tmp_path_factory.mktemp("feed_md")
    examples = feed_examples()
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(e.text + "\n" for e in examples), encoding="utf-8")
    rejects_path = tmp_path / "rejects.jsonl"
    run = sanction(
        "load",
        "--data-dir",
        str(tmp_path / "store"),
        "--create",
        "--no-progress",
        "--rejects",
        str(rejects_path),
        str(feed),
        env={"SANCTION_PEPPER": PEPPER_HEX},
    )
    return LoadedFeed(examples, run, rejects_path, tmp_path / "store")


def test_feed_examples_load_with_the_documented_results(loaded_feed):
    examples, run, rejects_path = loaded_feed.examples, loaded_feed.run, loaded_feed.rejects_path
    assert sum(e.status == "applied" for e in examples) >= 6, "the page should show every event type applied"

    rejected = {n: (e.field, e.reason) for n, e in enumerate(examples, 1) if e.status == "rejected"}
    assert run.returncode == (1 if rejected else 0), run.stderr
    reject_lines = rejects_path.read_text(encoding="utf-8").splitlines()
    got = {r["line"]: (r["field"], r["reason"]) for r in map(json.loads, reject_lines)}
    for n in sorted(rejected.keys() | got.keys()):
        where = examples[n - 1].where
        assert got.get(n) == rejected.get(n), f"docs/FEED.md:{where}: documented {rejected.get(n)}, got {got.get(n)}"

    applied = sum(e.status == "applied" for e in examples)
    duplicates = sum(e.status == "duplicate" for e in examples)
    summary = (
        f"{len(examples)} lines: {applied} applied, {duplicates} duplicates, {len(rejected)} rejected; data version {applied}"
    )
    assert run.stdout.splitlines()[0] == summary

    documented_summary, documented_rejects = documented_output()
    assert documented_summary == summary, "update the summary shown under 'Output' in docs/FEED.md"
    for line in documented_rejects:
        assert line in reject_lines, f"docs/FEED.md shows a rejects line the loader does not write: {line}"


# --------------------------------------------------------------------------- reason tables

EMITTING_MODULES = (
    "sanction_service/events.py",
    "sanction_service/lifecycle.py",
    "sanction_service/ledger.py",
    "sanction_service/identity.py",
    "sanction_service/text.py",
    "sanction_service/feedline.py",
    "sanction_service/policy.py",
    "sanction_service/grpc_api/convert.py",
    "sanction_service/grpc_api/restriction.py",
    "loaders/feed.py",
)
S = settings


def built_texts() -> list[str]:
    """The reasons the code builds from constants, spelled out."""
    roles = ", ".join(sorted(r.value for r in events.ORGANIZATION_ROLES))
    return [
        "must be one of " + ", ".join(sorted(events.DELIST_REASONS)),
        "must be " + roles,
        f"line longer than {MAX_FEED_LINE_BYTES} bytes",
        *(f"is longer than {value} characters" for name, value in vars(settings).items() if name.endswith("_CHARS")),
        f"is longer than {S.MAX_IDENTIFIER_BYTES} bytes in UTF-8",
        f"nests deeper than {S.MAX_JSON_DEPTH} levels",
        f"holds more than {S.MAX_EXTRA_DOCUMENTS} entries",
        f"holds more than {S.MAX_RESTRICTED_PERSONS} entries",
        f"a batch holds at most {S.MAX_BATCH} checks",
        f"must be from yesterday to {S.TRAVEL_DAYS_AFTER_TODAY} days after today (Asia/Shanghai)",
    ]


def emitted_texts() -> str:
    """The source of the modules that emit reasons, plus the texts they build from constants."""
    source = "\n".join((ROOT / name).read_text(encoding="utf-8") for name in EMITTING_MODULES)
    return source + "\n" + "\n".join(built_texts())


def limit_values() -> set[int]:
    return {value for name, value in vars(settings).items() if re.fullmatch(r"(MAX|TRAVEL)_[A-Z_]+", name)}


def assert_emitted(text: str, where: str) -> None:
    """`text` is a reason the code emits. `<N>` stands for one of settings' limits (the
    text with some limit in its place must be emitted as a whole); any other `<…>` for a
    part that varies (each fixed piece must be emitted)."""
    emitted = emitted_texts()
    if "<N>" in text:
        built = "\n".join(built_texts())
        assert any(text.replace("<N>", str(v)) in built for v in limit_values()), f"{where}: no code emits {text!r}"
        return
    for fragment in re.split(r"<[^>]*>", text):
        fragment = fragment.strip()
        if len(fragment) >= 3:
            assert fragment in emitted, f"{where}: no code emits {text!r}"


@pytest.mark.parametrize(
    "page, header, every_ticked",
    [
        ("FEED.md", "| field | reason |", False),
        ("DOCUMENTS.md", "| field | reason |", False),
        ("API.md", "| field | description |", True),
    ],
)
def test_documented_reasons_are_texts_the_code_emits(page, header, every_ticked):
    rows = table_rows((DOCS / page).read_text(encoding="utf-8"), header)
    assert len(rows) >= 10
    checked = 0
    for row in rows:
        reasons = ticked(row[1])
        if not reasons:
            continue  # "see DOCUMENTS.md"
        for reason in reasons if every_ticked else reasons[:1]:
            assert_emitted(reason, f"docs/{page}")
        checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------- INPUT_LIMITS.md

LIMIT_NAME = re.compile(r"`((?:MAX|TRAVEL)_[A-Z_]+)`")


def fixed_limits() -> dict[str, int]:
    """The constants of settings.py's "Fixed limits" section (up to the first non-limit)."""
    source = (ROOT / "sanction_service" / "settings.py").read_text(encoding="utf-8")
    section = source[source.index("# Fixed limits") : source.index("PREFILTER_FILE")]
    names = re.findall(r"^([A-Z][A-Z_]+) = ", section, re.MULTILINE)
    assert len(names) >= 15, names
    return {name: getattr(settings, name) for name in names}


def states_value(text: str, value: int) -> bool:
    forms = [str(value)] + ([f"{value >> 20} MiB"] if value >= 1 << 20 and value % (1 << 20) == 0 else [])
    return any(re.search(rf"(?<![\d.,]){re.escape(form)}(?![\d])", text) for form in forms)


def test_input_limits_states_every_fixed_limit_with_its_value():
    text = (DOCS / "INPUT_LIMITS.md").read_text(encoding="utf-8")
    limits = fixed_limits()
    in_rows = set()
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        for name in LIMIT_NAME.findall(line):
            assert name in limits, f"docs/INPUT_LIMITS.md names {name}, which is not a fixed limit of settings.py"
            assert states_value(line, limits[name]), (
                f"docs/INPUT_LIMITS.md: the row naming {name} does not say {limits[name]}: {line}"
            )
            in_rows.add(name)
    assert not limits.keys() - in_rows, f"docs/INPUT_LIMITS.md has no row for {sorted(limits.keys() - in_rows)}"


def test_input_limits_rejections_are_texts_the_code_emits():
    text = (DOCS / "INPUT_LIMITS.md").read_text(encoding="utf-8")
    checked = 0
    header_has_rejection = False
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if "rejection" in cells:
                header_has_rejection = cells[-1] == "rejection"
                continue
            if not header_has_rejection:
                continue
            for reason in ticked(cells[-1]):
                if "…" in reason or re.fullmatch(r"[A-Z_]+", reason):
                    continue  # "must be …", a status code
                assert_emitted(reason, "docs/INPUT_LIMITS.md")
                checked += 1
        else:
            header_has_rejection = header_has_rejection and line.startswith("|")
    assert checked >= 25


def test_only_input_limits_gives_the_numbers():
    """The other pages link to docs/INPUT_LIMITS.md instead of restating a length bound
    (reason texts in backticks aside), so a changed limit has one page to update."""
    limits = fixed_limits()
    sizes = {v for k, v in limits.items() if k.endswith("_CHARS")}
    byte_sizes = {v for k, v in limits.items() if k.endswith("_BYTES")}
    for page in ("FEED.md", "API.md", "DECISIONS.md", "DOCUMENTS.md"):
        prose = re.sub(r"`[^`]*`", "", (DOCS / page).read_text(encoding="utf-8"))
        for value in sizes:
            assert not re.search(rf"(?<![\d.]){value} characters", prose), f"docs/{page} restates {value} characters"
        for value in byte_sizes:
            assert not re.search(rf"(?<![\d.]){value} bytes", prose), f"docs/{page} restates {value} bytes"
            if value % (1 << 20) == 0:
                assert f"{value >> 20} MiB" not in prose, f"docs/{page} restates {value >> 20} MiB"
        assert "INPUT_LIMITS.md" in (DOCS / page).read_text(encoding="utf-8"), f"docs/{page} should link the limits"


# --------------------------------------------------------------------------- DECISIONS.md worked example

WORKED_HEADER = "| day | document | trip | decision | restricted | listing | role | caused denial | exemption |"
DOCUMENT_WORDS = {"passport": DocumentType.PASSPORT, "resident ID": DocumentType.RESIDENT_ID, "USCC": DocumentType.USCC}


def worked_example_rows() -> list[list[str]]:
    rows = table_rows((DOCS / "DECISIONS.md").read_text(encoding="utf-8"), WORKED_HEADER)
    assert len(rows) >= 6, "docs/DECISIONS.md: the worked example of bindings is missing"
    return rows


def worked_trip(cell: str) -> Trip | None:
    words = cell.split()
    if words[0] == "none":
        return None
    mode = TravelMode(words[0])
    parts = ticked(cell)
    if mode is TravelMode.RAIL:
        return Trip(mode, train_number=parts[0], rail_class=RailClass(parts[1]) if len(parts) > 1 else None)
    if mode is TravelMode.SHIP:
        return Trip(mode, ship_class=ShipClass(parts[0]))
    return Trip(mode)


@pytest.fixture(scope="module")
def feed_checker(loaded_feed):
    store = Store(loaded_feed.store_dir, pepper_fingerprint(bytes.fromhex(PEPPER_HEX)), map_size=1 << 30)
    checker = Checker(
        store, bytes.fromhex(PEPPER_HEX), prefilter_path=loaded_feed.store_dir / "prefilter.bloom", error_rate=0.001
    )
    checker.warm_up()  # the bound documents must be in the prefilter too
    yield checker
    store.close()


def test_worked_example_of_bindings_is_what_the_checker_answers(feed_checker):
    for day, document, trip, decision, restricted, listing, role, denies, exempted, matched in worked_example_rows():
        kind = next(t for word, t in DOCUMENT_WORDS.items() if document.startswith(word))
        asked = date.fromisoformat(day)
        feed_checker.clock = lambda asked=asked: asked  # the day the example is asked on
        result = feed_checker.check(CheckQuery(kind.value, ticked(document)[0], "", "", worked_trip(trip), asked))
        response = check_response(result)
        where = f"docs/DECISIONS.md worked example {day} {document} {trip}"
        assert pb.Decision.Name(response.decision) == decision, where
        assert str(response.restricted).lower() == restricted, where
        assert len(response.matches) == 1, f"{where}: {response.matches}"
        match = response.matches[0]
        assert match.listing_id == ticked(listing)[0], where
        assert pb.Role.Name(match.role) == ticked(role)[0], where
        assert match.caused_denial is (denies == "yes"), where
        assert match.exemption_applied is (exempted == "yes"), where
        assert match.matched_document == (ticked(matched)[0] if ticked(matched) else ""), where


def test_worked_example_lookup_lists_every_listing_of_the_person(feed_checker):
    text = " ".join((DOCS / "DECISIONS.md").read_text(encoding="utf-8").split())
    claim = re.search(
        r"`LookupPerson` with the passport lists both `([^`]+)` \(lifted, `([A-Z_]+)`\) and `([^`]+)`, "
        r"each with `matched_document` `([^`]+)`",
        text,
    )
    assert claim, "docs/DECISIONS.md: the worked example's lookup sentence changed; update this test"
    lifted, reason, active, masked = claim.groups()
    passport = next(ticked(row[1])[0] for row in worked_example_rows() if row[1].startswith("passport"))
    found, _ = feed_checker.lookup_person(normalize(DocumentType.PASSPORT, passport, "CHN"))
    listings = {m.listing_id: m for m in map(match_message, found)}
    assert set(listings) == {lifted, active}
    assert not listings[lifted].active and listings[lifted].lifted_reason == reason
    assert listings[active].active
    assert {m.matched_document for m in listings.values()} == {masked}


# --------------------------------------------------------------------------- exit codes


def readme_exit_codes() -> dict[str, set[int]]:
    """README's "Exit codes" table: the codes each command is documented to exit with."""
    by_command: dict[str, set[int]] = {name: set() for name in cli.EXIT_CODES}
    for code, commands, _ in table_rows((ROOT / "README.md").read_text(encoding="utf-8"), "| code | commands |"):
        for name in cli.EXIT_CODES if commands == "all" else ticked(commands):
            by_command[name].add(int(code))
    return by_command


def test_exit_status_tables_name_the_codes_cli_uses():
    load_codes = set(cli.EXIT_CODES["load"])
    assert {cli.EXIT_OK, cli.EXIT_REJECTS, cli.EXIT_STORE, cli.EXIT_WRITER_BUSY, cli.EXIT_STORE_FULL} <= load_codes
    by_code: dict[int, str] = {}
    for code, text in table_rows((DOCS / "FEED.md").read_text(encoding="utf-8"), "| status | when |"):
        by_code[int(code)] = by_code.get(int(code), "") + " " + text
    assert set(by_code) == load_codes, f"docs/FEED.md: exit codes {sorted(by_code)}, cli.py uses {sorted(load_codes)}"
    assert "--no-wait" in by_code[cli.EXIT_WRITER_BUSY]
    assert "full" in by_code[cli.EXIT_STORE_FULL]
    assert "rejected" in by_code[cli.EXIT_REJECTS]
    documented = readme_exit_codes()
    for name, codes in cli.EXIT_CODES.items():
        assert documented[name] == set(codes), (
            f"README.md Exit codes, sanction {name}: documented {sorted(documented[name])}, cli.py {sorted(codes)}"
        )
    constants = {value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert constants == set().union(*documented.values()) - {1} | {cli.EXIT_REJECTS}, "an EXIT_ constant is undocumented"


# --------------------------------------------------------------------------- DECISIONS.md policy table

TRAINS_BY_LETTER = {"G": "G1234", "D": "D301", "C": "C2001", "Z": "Z1", "T": "T109", "K": "K1", "Y": "Y1", "L": "L1", "S": "S5"}


def policy_rows() -> list[tuple[str, list[str], list[str] | None, bool]]:
    """(mode, sample train numbers, classes or None for every class, restricted)."""
    rows = []
    for mode, train, classes, restricted in table_rows(
        (DOCS / "DECISIONS.md").read_text(encoding="utf-8"), "| mode | train number | class | restricted |"
    ):
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
                trip = (
                    Trip(TravelMode.RAIL, train_number=train, rail_class=member)
                    if mode == "RAIL"
                    else Trip(TravelMode.SHIP, ship_class=member)
                )
                assert purchase_is_restricted(trip) is restricted, (mode, train, member.value)
                covered.setdefault((mode, train), set()).add(member)
            if mode == "RAIL" and classes is None:  # "the class may be left out"
                assert purchase_is_restricted(Trip(TravelMode.RAIL, train_number=train)) is restricted
    for (mode, train), members in covered.items():
        assert members == set(RailClass if mode == "RAIL" else ShipClass), f"{mode} {train}: table misses a class"


# --------------------------------------------------------------------------- settings


def test_every_setting_is_in_readmes_configuration_table():
    """Each SANCTION_* variable settings.py reads has a row (or a SANCTION_X_* family row)
    in README's Configuration table; only the tests' own variables are left out."""
    source = (ROOT / "sanction_service" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'env_[a-z]+\("(SANCTION_[A-Z_]+)"', source)) - {"SANCTION_TEST_BATCH_PAUSE"}
    rows = table_rows((ROOT / "README.md").read_text(encoding="utf-8"), "| variable | flag |")
    names = [name.split("=")[0] for row in rows for name in ticked(row[0])]
    families = [name[:-1] for name in names if name.endswith("*")]
    missing = sorted(v for v in read if v not in names and not any(v.startswith(f) for f in families))
    assert not missing, f"README Configuration lacks {missing}"
    assert len(read) > 20
