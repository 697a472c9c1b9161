"""Property: whatever JSON value any field of any event type holds, the feed answers with
an applied event or a rejection naming a field, never an exception, and a good event
placed after the bad one applies.

Each example starts from a valid event of one type (LIST of a person, LIST of an
organisation, DELIST, PERFORM, EXTEND, CORRECT, EXEMPT), puts an arbitrary JSON value
(nulls, bools, huge numbers, floats, text with control characters or lone surrogates,
long text, lists, objects, nesting thousands of levels deep) at one of its fields, nested
ones included, or under a new field, and sends [a LIST that the event refers to, the
event, a fresh good LIST]. In process: through the loader's line decoding into the Ledger
on a real LMDB store, and as a decoded object straight into the Ledger. Over gRPC:
through ApplyEvents on a real server. Example counts are set explicitly below.
"""

from __future__ import annotations

import itertools
import json
import math
import operator

import pytest
from conftest import PEPPER, doc, list_org, list_person, make_ric, make_uscc
from conftest import event as feed_event
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sanction_service.loaders.feed import decode_line

from sanction_service.events import UNPRINTABLE_FIELD
from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import APPLIED, DUPLICATE, REJECTED, FeedLine, Ledger
from sanction_service.settings import MAX_FEED_LINE_BYTES
from sanction_service.store import Store
from sanction_service.text import is_identifier

IN_PROCESS_EXAMPLES = 400
GRPC_EXAMPLES = 150

PERSON = make_ric("110105", "19800101", 123)
OTHER = make_ric("310115", "19750505", 222)
USCC = make_uscc()
# Every field name of DOMAIN §6; a rejection names one of these (or a field the example added).
KNOWN_FIELDS = {
    "event_id",
    "type",
    "occurred_at",
    "listing_id",
    "list_type",
    "case_number",
    "court",
    "listed_on",
    "expires_on",
    "subject",
    "extra_documents",
    "restricted_persons",
    "grounds",
    "obligation",
    "amount_unperformed",
    "reason",
    "effective_on",
    "performed_on",
    "document",
    "modes",
    "valid_from",
    "valid_to",
    "reference",
}
# Rejections that concern the event as a whole rather than one field.
WHOLE_EVENT_REASONS = {"CORRECT names no field to correct", "a field name is not valid text"}


def base_events(n: int) -> dict[str, tuple[dict, list[tuple]]]:
    """For example `n`: each event type's valid event (for listing L{n}) and the paths of
    the fields to corrupt, nested ones included."""
    lid = f"L{n}"
    person_paths = [
        ("subject", "name"),
        ("subject", "kind"),
        ("subject", "document"),
        ("subject", "document", "type"),
        ("subject", "document", "number"),
        ("subject", "document", "country"),
    ]
    return {
        "LIST": (
            list_person(
                f"{lid}-new",
                PERSON,
                event_id=f"{lid}-list",
                expires_on="2030-01-01",
                extra=[doc("E12345678", "PASSPORT")],
                grounds=1,
                obligation="支付工程款",
                amount_unperformed="52800.00",
            ),
            person_paths + [("extra_documents", 0), ("extra_documents", 0, "country")],
        ),
        "LIST_ORG": (
            list_org(f"{lid}-org", USCC, [("LEGAL_REPRESENTATIVE", "李娜", OTHER)], event_id=f"{lid}-org"),
            [
                ("restricted_persons", 0),
                ("restricted_persons", 0, "role"),
                ("restricted_persons", 0, "name"),
                ("restricted_persons", 0, "document", "number"),
                ("restricted_persons", 0, "document", "country"),
            ],
        ),
        "DELIST": (feed_event("DELIST", lid, event_id=f"{lid}-delist", reason="SETTLED", effective_on="2025-01-01"), []),
        "PERFORM": (feed_event("PERFORM", lid, event_id=f"{lid}-perform", performed_on="2025-01-01"), []),
        "EXTEND": (feed_event("EXTEND", lid, event_id=f"{lid}-extend", expires_on="2031-01-01"), []),
        "CORRECT": (
            feed_event(
                "CORRECT",
                lid,
                event_id=f"{lid}-correct",
                court="北京市海淀区人民法院",
                case_number="(2024)京0108执9号",
                subject={"kind": "PERSON", "name": "张伟", "document": doc(PERSON)},
            ),
            person_paths,
        ),
        "EXEMPT": (
            feed_event(
                "EXEMPT",
                lid,
                event_id=f"{lid}-exempt",
                document=doc(PERSON),
                modes=["FLIGHT", "RAIL"],
                valid_from="2025-01-01",
                valid_to="2025-12-31",
                reference=f"R-{n}",
            ),
            [("document", "country"), ("document", "number"), ("modes", 0)],
        ),
    }


def before(n: int) -> dict:
    """The listing the follow-up events refer to."""
    return list_person(f"L{n}", PERSON, event_id=f"L{n}-setup", expires_on="2030-01-01")


def after(n: int) -> dict:
    return list_person(f"A{n}", OTHER, event_id=f"A{n}-after")


class Deep:
    """Lists nested `levels` deep: built without recursion, far past json's own limit."""

    def __init__(self, levels: int):
        self.levels = levels

    def value(self) -> list:
        value: list = []
        for _ in range(self.levels - 1):
            value = [value]
        return value

    def text(self) -> str:
        return "[" * self.levels + "]" * self.levels


PLACEHOLDER = "\x00deep\x00"
texts = st.one_of(
    st.text(max_size=30),  # every category but surrogates, control characters included
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "\ud800",
            "a\udfffb",
            "\u2028",
            "x" * 128,
            "x" * 129,
            "案" * 42,
            "案" * 43,
            "\U0001f600" * 200,
            "FLIGHT",
            "PERSON",
            "ORGANIZATION",
            "SETTLED",
            "PRINCIPAL",
            "USCC",
            "RESIDENT_ID",
            "PASSPORT",
            "CHN",
            "2025-06-01",
            "2025-02-30",
            "2024-05-01T10:00:00+08:00",
            PERSON,
            OTHER,
            USCC,
        ]
    ),
    st.builds(operator.mul, st.sampled_from(["x", "字", "\U0001f600", "\t"]), st.integers(100, 5000)),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**1000), 10**1000), st.floats(), texts)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "number", "country", "kind", "name", "document", "role"]) | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
values = st.one_of(json_values, json_values, json_values, st.integers(30, 5000).map(Deep))
# A new field, one time in five (its name may itself be hostile); otherwise an existing one.
added_fields = st.integers(0, 4).flatmap(
    lambda k: st.sampled_from(["note", "\ud800", "x" * 129]) | st.text(max_size=8) if k == 0 else st.none()
)
mutations = st.tuples(
    st.sampled_from(["LIST", "LIST_ORG", "DELIST", "PERFORM", "EXTEND", "CORRECT", "EXEMPT"]),
    st.integers(0, 1000),
    values,
    added_fields,
)
counters = itertools.count(1)


@pytest.fixture(scope="module")
def shared_ledger(tmp_path_factory):
    """One store for every example: each uses its own listing and event ids, and a fresh
    LMDB environment per example would cost more than the example."""
    store = Store(
        tmp_path_factory.mktemp("feed-properties") / "store", pepper_fingerprint(PEPPER), create=True, map_size=256 << 20
    )
    yield Ledger(store, PEPPER)
    store.close()


def mutated(n: int, mutation, *, as_text: bool) -> tuple[dict | str, dict, object]:
    """The corrupted event (JSON text, or the object), the dict it was built from, and
    the value put in it."""
    kind, pick, value, added = mutation
    raw, nested = base_events(n)[kind]
    paths = [(k,) for k in raw] + nested
    path = (added,) if added is not None else paths[pick % len(paths)]
    target = raw
    for step in path[:-1]:
        target = target[step]
    if isinstance(value, Deep):
        target[path[-1]] = PLACEHOLDER if as_text else value.value()
    else:
        target[path[-1]] = value
    if not as_text:
        return raw, raw, value
    # ASCII escapes carry lone surrogates as a producer's JSON would; NaN and Infinity come
    # out as the non-JSON literals a sloppy producer writes.
    text = json.dumps(raw)
    if isinstance(value, Deep):
        text = text.replace(json.dumps(PLACEHOLDER), value.text())
    return text, raw, value


def has_non_finite(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_outcomes(outcomes: list[tuple[str, str, str, str]], raw: dict, value, *, text: bool) -> None:
    """outcomes: (status, field, reason, event_id) for [before, the event, after]."""
    assert [o[0] for o in outcomes][::2] == [APPLIED, APPLIED], outcomes  # the good ones around it apply
    status, field, reason, event_id = outcomes[1]
    assert status in (APPLIED, DUPLICATE, REJECTED)
    event(status)  # shown by --hypothesis-show-statistics
    if status != REJECTED:
        return
    if text and reason == "not valid JSON":
        assert has_non_finite(value), "a JSON line refused as not JSON"
        return
    if text and reason.startswith("line longer than"):
        assert len(json.dumps(raw)) > MAX_FEED_LINE_BYTES
        return
    if not field:
        assert reason in WHOLE_EVENT_REASONS, reason
        return
    # A top-level key is named as it is, even one like "." or "a[0]"; a nested field by its path.
    root = field if field in raw else field.split(".")[0].split("[")[0]
    assert root in KNOWN_FIELDS | set(raw) | {UNPRINTABLE_FIELD}, (field, reason)
    assert event_id == "" or is_identifier(event_id)


@settings(max_examples=IN_PROCESS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations)
def test_any_value_in_any_field_is_applied_or_rejected_naming_a_field_in_process(shared_ledger, mutation):
    # Through the loader's own line decoding (the path of `sanction load`, plain and --bulk).
    n = next(counters)
    text, raw, value = mutated(n, mutation, as_text=True)
    lines = [decode_line(i, line.encode()) for i, line in enumerate([json.dumps(before(n)), text, json.dumps(after(n))], 1)]
    outcomes = [(o.status, o.field, o.reason, o.event_id) for o in shared_ledger.apply(lines)]
    check_outcomes(outcomes, raw, value, text=True)
    # The same event as a Python object straight into the Ledger (no JSON text at all).
    n = next(counters)
    obj, raw, value = mutated(n, mutation, as_text=False)
    lines = [FeedLine(1, before(n)), FeedLine(2, obj), FeedLine(3, after(n))]
    outcomes = [(o.status, o.field, o.reason, "") for o in shared_ledger.apply(lines)]
    check_outcomes(outcomes, raw, value, text=False)


@settings(
    max_examples=GRPC_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(mutation=mutations)
def test_any_value_in_any_field_is_applied_or_rejected_naming_a_field_through_apply_events(client, mutation):
    # The server (a fixture) is shared by the examples on purpose, like the store above.
    n = next(counters)
    text, raw, value = mutated(n, mutation, as_text=True)
    summary = client.apply_events([json.dumps(before(n)), text, json.dumps(after(n))])
    rejects = {r.line: r for r in summary.rejects}
    outcomes = [
        (REJECTED, rejects[i].field, rejects[i].reason, rejects[i].event_id)
        if i in rejects
        else (DUPLICATE if i == 2 and summary.duplicates else APPLIED, "", "", "")
        for i in (1, 2, 3)
    ]
    check_outcomes(outcomes, raw, value, text=True)
