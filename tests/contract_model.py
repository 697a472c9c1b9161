"""A second, deliberately simple model of the service's contract, to check the service against.

Written from the reference contract alone, with plain dicts, sets and lists; it imports
nothing from `sanction_service` and shares none of its logic (only `stdnum`, to compute
check characters). tests/test_contract_model.py feeds the same random events to the real
service and to this model and compares every event outcome and every check.

Where the contract is silent or ambiguous the model does not guess: it answers "either"
(three-valued logic, YES / MAYBE / NO) and accepts both answers. Every such place is in
SILENT, with the reason; `Model.hits` counts how often each one left an answer open.

What the model knows (and nothing more):

- documents: numbers lose spaces and hyphens and are upper-cased, a 15-digit resident ID
  becomes its 18-digit form, a passport's country defaults to CHN; two documents are the
  same only with the same type, country and number; check characters (resident ID, USCC)
  and formats are checked; masked numbers hide a resident ID's birth month and day, and
  all but the first and last two characters of anything else;
- purchases: the policy table (FLIGHT; RAIL by train letter and class; SHIP by class),
  with a malformed trip or a travel date before yesterday or after today + 366 an error;
- who: a listing names its subject (a person, or an organisation by its USCC) and, for an
  organisation, its restricted persons. A document in a PERSON subject's
  extra_documents belongs to that subject, also after the declaring listing is lifted,
  until a CORRECT withdraws it from every listing that declared it. Binding is a fact
  about the person: a listing naming any document of a person (their own, or one bound to
  them alone) restricts that person under all their documents, and an EXEMPT may name
  the person by any of them;
- when: a listing restricts on day D when active and listed_on <= D < expires_on;
- exemptions: one listing, one person (under every document bound to them), some modes,
  an inclusive window; never an organisation; they do not change `restricted`;
- a DENY names the listings that caused it, with the role (and for an organisation's
  people the organisation's name) and the case number;
- events: malformed lines rejected; duplicates (same id, same content) and conflicts (same
  id, other content) first, then LIST of a used listing_id and any other event for an
  unknown or lifted listing rejected; identifiers of at most 128 bytes of printable UTF-8
  (the rejection names the field); each applied event takes the next sequence number.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from stdnum.cn import ric, uscc

YES, MAYBE, NO = 2, 1, 0
APPLIED, DUPLICATE, REJECTED = "APPLIED", "DUPLICATE", "REJECTED"
ERROR = "ERROR"

# Every place where the contract does not settle the answer. The model answers "either"
# there (for an event: applied or rejected; for a check: with or without that listing).
SILENT = [
    (
        "correct-new-subject-keeps-extras",
        "a CORRECT that replaces a PERSON subject without giving extra_documents: do the old extra documents stay "
        "(now the new subject's), go, or stay bound to the old subject?",
    ),
    (
        "document-bound-to-two-persons",
        "a document that listings bind to two different resident IDs: which person does a listing naming that "
        "document restrict? (A check on the document itself is restricted by the listings of both.)",
    ),
    (
        "binding-chain",
        "a document bound to a subject that is itself a document bound to someone else (two links, e.g. a passport "
        "in the extra_documents of a listing whose subject is a passport): does the second link count?",
    ),
    (
        "exemption-person-ambiguous",
        "an EXEMPT whose document stands for entries of the listing that are not surely one person (e.g. a document "
        "bound to two persons the listing names): which of them does it cover?",
    ),
    (
        "exempt-listing-not-in-force",
        "an EXEMPT on a listing that is not in force on any day of its window (listed later, or expired but not "
        "lifted): is that 'a person the listing restricts'?",
    ),
    ("exempt-window-inverted", "an EXEMPT with valid_to before valid_from: rejected, or an exemption that covers no day?"),
    (
        "exempt-same-reference",
        "a second EXEMPT for the same listing, person and reference: does it replace the first or add to it?",
    ),
    (
        "exemption-after-person-removed",
        "an exemption whose person a CORRECT removed from the listing and a later CORRECT named again: does it still apply?",
    ),
    (
        "lifted-before-effective-date",
        "a DELIST whose effective_on (or PERFORM whose performed_on) is after the travel date, e.g. in the future: does "
        "the listing restrict until that day, or is lifting immediate?",
    ),
    (
        "event-for-listing-lifted-in-future",
        "an event for a listing delisted with an effective_on still in the future: is it 'no longer active'?",
    ),
    (
        "dates-inverted",
        "a LIST or CORRECT leaving expires_on on or before listed_on: rejected, or a listing that never restricts?",
    ),
    (
        "kind-change-leftovers",
        "a CORRECT that changes the subject's kind but not the extra_documents / restricted_persons the new kind "
        "cannot have: rejected, or the leftovers dropped?",
    ),
    ("resent-rejected-event-id", "an event_id seen before only on a rejected event: a new event, a duplicate or a conflict?"),
    (
        "resident-id-birth-date",
        "a resident ID with a right check character but no real birth date in it (month 13): valid or a caller error?",
    ),
    (
        "country-on-other-documents",
        "an issuing country other than CHN on a resident ID or a permit (only passports have one): ignored or an error?",
    ),
    (
        "ship-without-class",
        "a SHIP check without a class (only a RAIL check on a non-G train without one is called a caller error): an "
        "error, or answered as a restricted purchase (never a silent ALLOW)?",
    ),
    ("train-number-spaces", "a train number with surrounding spaces (' G12 '): trimmed, or no match and a caller error?"),
]
SILENT_NAMES = {name for name, _ in SILENT}

RAIL_EMU_RESTRICTED = {"BUSINESS", "PREMIUM", "FIRST", "SOFT_SLEEPER", "DELUXE_SOFT_SLEEPER"}
RAIL_OTHER_RESTRICTED = {"SOFT_SLEEPER", "DELUXE_SOFT_SLEEPER"}
SHIP_RESTRICTED = {"SPECIAL", "FIRST", "SECOND"}
TRAIN = re.compile(r"[GDCZTKYLS]?[0-9]{1,4}")


# --------------------------------------------------------------------------- documents


def norm(doc: dict) -> tuple[str, str, str]:
    """(type, country, number) after the contract's normalisation."""
    number = re.sub(r"[ \-]", "", doc["number"]).upper()
    if doc["type"] == "RESIDENT_ID" and len(number) == 15:
        body = number[:6] + "19" + number[6:]
        number = body + ric.calc_check_digit(body + "0")
    country = (doc.get("country") or "CHN").upper() if doc["type"] == "PASSPORT" else "CHN"
    return (doc["type"], country, number)


USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def doc_problem(doc: dict) -> str:
    """'' for a valid document, ERROR for one the contract calls invalid, MAYBE-tag for one it is silent on."""
    number = re.sub(r"[ \-]", "", doc["number"]).upper()
    type_, country = doc["type"], doc.get("country") or ""
    if type_ == "RESIDENT_ID":
        if re.fullmatch(r"[0-9]{15}", number):
            number = number[:6] + "19" + number[6:] + "0"
            number = number[:17] + ric.calc_check_digit(number)
        if not re.fullmatch(r"[0-9]{17}[0-9X]", number) or ric.calc_check_digit(number) != number[17]:
            return ERROR
        try:
            date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        except ValueError:
            return "resident-id-birth-date"
    elif type_ == "USCC":
        if len(number) != 18 or any(c not in USCC_ALPHABET for c in number) or uscc.calc_check_digit(number[:17]) != number[17]:
            return ERROR
    elif type_ == "PASSPORT":
        if not re.fullmatch(r"[A-Z0-9]{5,20}", number) or (country and not re.fullmatch(r"[A-Z]{3}", country)):
            return ERROR
        return ""
    elif not re.fullmatch(r"[A-Z0-9]+", number):
        return ERROR
    if country and country != "CHN":
        return "country-on-other-documents"
    return ""


def event_documents(event: dict) -> list[dict]:
    docs = [event["subject"]["document"]] if isinstance(event.get("subject"), dict) else []
    docs += list(event.get("extra_documents") or [])
    docs += [p["document"] for p in event.get("restricted_persons") or []]
    docs += [event["document"]] if event.get("type") == "EXEMPT" and isinstance(event.get("document"), dict) else []
    return docs


def mask(doc: tuple) -> str:
    number = doc[2]
    if doc[0] == "RESIDENT_ID":
        return number[:10] + "****" + number[14:]
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


EVENT_TYPES = {"LIST", "DELIST", "PERFORM", "EXTEND", "CORRECT", "EXEMPT"}
DOCUMENT_TYPES = {"RESIDENT_ID", "USCC", "PASSPORT", "HK_MACAO_PERMIT", "TAIWAN_PERMIT", "FOREIGN_PERMANENT_RESIDENT_ID"}
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
NAME_BOUND = 1000  # "bounded lengths": whatever the docs say, a name this long is over it


def decode(event) -> dict | None:
    """A feed line given as text: its JSON object, or None when it is not one (strict JSON)."""
    if isinstance(event, dict):
        return event
    try:
        value = json.loads(event, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _depth(value, limit: int = 64) -> bool:
    """True when `value` nests deeper than `limit` levels."""
    todo = [(value, 1)]
    while todo:
        item, level = todo.pop()
        if level > limit:
            return True
        if isinstance(item, dict):
            todo += [(v, level + 1) for v in item.values()]
        elif isinstance(item, list):
            todo += [(v, level + 1) for v in item]
    return False


def shape_problem(event: dict) -> bool:
    """True when the event is malformed (wrong types, missing fields, control characters, a
    name far too long, absurd nesting), whatever the state of the store."""

    def text(value, bound=NAME_BOUND):
        return isinstance(value, str) and value.strip() != "" and len(value) <= bound and not CONTROL.search(value)

    def day(value):
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return False
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return True

    def document(value, person=False):
        return (
            isinstance(value, dict)
            and value.get("type") in DOCUMENT_TYPES
            and isinstance(value.get("number"), str)
            and (value.get("country") is None or isinstance(value.get("country"), str))
            and not (person and value.get("type") == "USCC")
        )

    def optional(name, check):
        return name not in event or event[name] is None or check(event[name])

    def listing_fields(required: bool) -> bool:
        ok = True
        for name in ("case_number", "court"):
            ok &= (name in event and text(event[name])) if required else (name not in event or text(event[name]))
        ok &= day(event.get("listed_on")) if required else ("listed_on" not in event or day(event["listed_on"]))
        ok &= optional("expires_on", day)
        if required or "subject" in event:
            subject = event.get("subject")
            ok &= (
                isinstance(subject, dict)
                and subject.get("kind") in ("PERSON", "ORGANIZATION")
                and text(subject.get("name"))
                and document(subject.get("document"))
                and (subject["document"]["type"] == "USCC") == (subject["kind"] == "ORGANIZATION")
            )
        ok &= optional("extra_documents", lambda v: isinstance(v, list) and all(document(x, True) for x in v))
        ok &= optional(
            "restricted_persons",
            lambda v: (
                isinstance(v, list)
                and all(
                    isinstance(p, dict) and p.get("role") in ROLES and text(p.get("name")) and document(p.get("document"), True)
                    for p in v
                )
            ),
        )
        for name in ("grounds", "obligation", "amount_unperformed"):
            ok &= optional(
                name,
                lambda v: (
                    (isinstance(v, str) and not CONTROL.search(v)) or (isinstance(v, (int, float)) and not isinstance(v, bool))
                ),
            )
        return ok

    if _depth(event) or event.get("type") not in EVENT_TYPES:
        return True
    if not isinstance(event.get("occurred_at"), str) or not RFC3339.fullmatch(event["occurred_at"]):
        return True
    kind = event["type"]
    if kind == "LIST":
        return not (event.get("list_type") in ("DISHONEST", "CONSUMPTION_RESTRICTION") and listing_fields(True))
    if kind == "CORRECT":
        return not listing_fields(False)
    if kind == "DELIST":
        return not (event.get("reason") in REASONS and day(event.get("effective_on")))
    if kind == "PERFORM":
        return not day(event.get("performed_on"))
    if kind == "EXTEND":
        return not day(event.get("expires_on"))
    modes = event.get("modes")
    return not (
        document(event.get("document"))
        and isinstance(modes, list)
        and modes
        and all(m in ("FLIGHT", "RAIL", "SHIP") for m in modes)
        and day(event.get("valid_from"))
        and day(event.get("valid_to"))
    )


def is_resident(d: tuple) -> bool:
    return d[0] == "RESIDENT_ID"


def valid_identifier(value) -> bool:
    return (
        isinstance(value, str)
        and value.strip() != ""
        and len(value.encode("utf-8", "surrogatepass")) <= 128
        and value.isprintable()
    )


def content(event: dict) -> str:
    return json.dumps(event, sort_keys=True, ensure_ascii=False)


def purchase_restricted(trip: tuple | None):
    """True / False, or ERROR for a trip the contract calls a caller error."""
    if trip is None:
        return True
    mode, train, rail_class, ship_class = trip
    if mode == "FLIGHT":
        return True
    if mode == "RAIL":
        number = train.upper()
        if not TRAIN.fullmatch(number):
            return ERROR
        if number[0] == "G":
            return True
        if not rail_class:
            return ERROR
        return rail_class in (RAIL_EMU_RESTRICTED if number[0] in "DC" else RAIL_OTHER_RESTRICTED)
    if mode == "SHIP":
        if not ship_class:
            return ERROR
        return ship_class in SHIP_RESTRICTED
    return ERROR


def d(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


# --------------------------------------------------------------------------- state


@dataclass
class Listing:
    lid: str
    list_type: str
    listed_on: date
    expires_on: date | None
    kind: str
    subject: tuple
    extra: list = field(default_factory=list)
    extra_maybe: bool = False  # after a CORRECT of the subject that left extra_documents out
    ghosts: set = field(default_factory=set)  # (document, person) bindings that may outlive such a CORRECT
    restricted: list = field(default_factory=list)  # [(role, document)]
    active: bool = True
    lifted_on: date | None = None
    murky: bool = False  # the service applied an event the model could only say "either" about
    name: str = ""  # the subject's name (an organisation's name in "as legal representative of X")
    case_number: str = ""

    def roles(self, person: tuple) -> set:
        if person == self.subject:
            return {"SUBJECT"}
        return {role for role, doc in self.restricted if doc == person}

    def persons(self) -> set:
        """The persons this listing restricts (never the organisation)."""
        return {self.subject} if self.kind == "PERSON" else {doc for _, doc in self.restricted}

    def named(self) -> set:
        return self.persons() | ({self.subject} if self.kind == "ORGANIZATION" else set())


@dataclass
class Exemption:
    lid: str
    persons: frozenset
    certain: bool
    modes: frozenset
    valid_from: date
    valid_to: date
    reference: str
    tag: str = ""  # the silent place that made it uncertain
    # The same, as the model would have it without same-person bindings (Model.as_if_bindings_went_one_way).
    narrow_persons: frozenset = frozenset()
    narrow_certain: bool = False


@dataclass
class EventExpectation:
    outcomes: set
    rejected_field: str | None = None  # where the contract names it
    tags: set = field(default_factory=set)
    apply: object = None  # called when the service applied the event


@dataclass
class CheckExpectation:
    error: bool = False
    may_error: bool = False  # a caller error is one of the acceptable answers
    deny: dict = field(default_factory=dict)  # listing_id -> YES / MAYBE
    restricted: int = NO
    masked: str = ""
    # listing_id -> the (role, organisation name, case number) a denying match may carry
    reasons: dict = field(default_factory=lambda: defaultdict(set))
    tags: set = field(default_factory=set)

    @property
    def decision(self) -> str:
        if self.error:
            return ERROR
        if self.may_error:
            return "either"
        best = max(self.deny.values(), default=NO)
        return "DENY" if best == YES else "ALLOW" if best == NO else "either"


class Model:
    def __init__(self, today: date):
        self.today = today
        self.applied: dict[str, str] = {}
        self.rejected_ids: set[str] = set()
        self.listings: dict[str, Listing] = {}
        self.exemptions: dict[str, list[Exemption]] = defaultdict(list)
        self.seq = 0
        self.hits: Counter = Counter()
        self._version = 0
        self._cache: dict = {}
        # False only inside `as_if_bindings_went_one_way`.
        self.same_person_bindings = True

    @contextmanager
    def as_if_bindings_went_one_way(self):
        """The model without one rule: that a listing naming a document bound to a person restricts
        that person under all their documents (and an EXEMPT may name any of them). Used only to
        recognise the documented service bug, never to decide what is right."""
        self.same_person_bindings = False
        try:
            yield self
        finally:
            self.same_person_bindings = True

    # ----------------------------------------------------------------- bindings and reach

    def _changed(self) -> None:
        self._version += 1
        self._cache = {}

    def edges(self) -> list[tuple[tuple, tuple, bool, str]]:
        """(document, person, certain, tag): every binding any listing (active or lifted) declares."""
        if "edges" not in self._cache:
            out = []
            for listing in self.listings.values():
                if listing.kind == "PERSON":
                    for doc in listing.extra:
                        if doc != listing.subject:
                            uncertain = listing.extra_maybe or listing.murky
                            out.append(
                                (doc, listing.subject, not uncertain, "correct-new-subject-keeps-extras" if uncertain else "")
                            )
                for doc, person in listing.ghosts:
                    if doc != person:
                        out.append((doc, person, False, "correct-new-subject-keeps-extras"))
            self._cache["edges"] = out
        return self._cache["edges"]

    def reach(self, x: tuple) -> dict[tuple, tuple[int, str]]:
        """The documents under which a listing restricts the person that document x stands for,
        YES or MAYBE (with the silent place that makes it MAYBE). Binding is a fact about the
        person: x belongs to x itself and to every person a listing binds it to, and a listing
        naming any document of that person (the person's own, or one bound to them alone)
        restricts them under all of them. A document bound to two persons names neither of them
        for sure; longer chains of bindings are left open; two resident IDs are never one person."""
        key = ("reach", x, self.same_person_bindings)
        if key in self._cache:
            return self._cache[key]
        owners: dict[tuple, dict[tuple, tuple[bool, str]]] = defaultdict(dict)
        for doc, person, certain, tag in self.edges():
            if owners[doc].get(person, (False, ""))[0] is False:
                owners[doc][person] = (certain, tag)
        out = {x: (YES, "")}

        def at_least(doc, level, tag):
            if out.get(doc, (NO, ""))[0] < level:
                out[doc] = (level, tag)

        mine = {x: (True, "")}  # the persons x belongs to
        for person, (certain, tag) in owners.get(x, {}).items():
            mine[person] = (certain, tag)
            at_least(person, YES if certain else MAYBE, tag)
        for doc, its in list(owners.items()) if self.same_person_bindings else ():
            # Documents of the same person: bound to x, or to the person x is bound to.
            for person in its.keys() & mine.keys():
                (certain, tag), (mine_certain, mine_tag) = its[person], mine[person]
                if len(its) > 1:
                    at_least(doc, MAYBE, "document-bound-to-two-persons")
                elif certain and mine_certain:
                    at_least(doc, YES, "")
                else:
                    at_least(doc, MAYBE, tag or mine_tag)
        # Anything further along the bindings (never into another resident ID but along them).
        forward, backward = defaultdict(list), defaultdict(list)
        for doc, its in owners.items():
            for person in its:
                forward[doc].append(person)
                backward[person].append(doc)
        seen = {(x, True)}
        todo = [(x, True)]
        while todo:
            node, all_forward = todo.pop()
            steps = [(p, all_forward) for p in forward[node]] + [(doc, False) for doc in backward[node]]
            for nxt, along in steps:
                if is_resident(nxt) and nxt != x and not along:
                    continue
                if (nxt, along) not in seen:
                    seen.add((nxt, along))
                    todo.append((nxt, along))
                    at_least(nxt, MAYBE, "binding-chain")
        self._cache[key] = out
        return out

    def naming(self) -> dict[tuple, list[Listing]]:
        if "naming" not in self._cache:
            index = defaultdict(list)
            for listing in self.listings.values():
                if not listing.murky:
                    for doc in listing.named():
                        index[doc].append(listing)
            self._cache["naming"] = index
        return self._cache["naming"]

    def in_force(self, listing: Listing, day: date) -> tuple[int, str]:
        if listing.murky:
            return MAYBE, "event-for-listing-lifted-in-future"
        if day < listing.listed_on or (listing.expires_on is not None and day >= listing.expires_on):
            return NO, ""
        if listing.active:
            return YES, ""
        if listing.lifted_on is not None and day < listing.lifted_on:
            return MAYBE, "lifted-before-effective-date"
        return NO, ""

    def covered(self, listing: Listing, person: tuple, mode: str, day: date) -> tuple[int, str]:
        best = (NO, "")
        for ex in self.exemptions.get(listing.lid, ()):
            persons, certain = (ex.persons, ex.certain) if self.same_person_bindings else (ex.narrow_persons, ex.narrow_certain)
            if person in persons and mode in ex.modes and ex.valid_from <= day <= ex.valid_to:
                if certain:
                    return YES, ""
                best = (MAYBE, ex.tag)
        return best

    # ----------------------------------------------------------------- checks

    def expect_check(self, doc: dict, trip: tuple | None, day: date | None) -> CheckExpectation:
        """`day` None: no travel date given, which means today."""
        day = self.today if day is None else day
        if not self.today - timedelta(days=1) <= day <= self.today + timedelta(days=366):
            return CheckExpectation(error=True)
        problem = doc_problem(doc)
        if problem == ERROR:
            return CheckExpectation(error=True)
        out = CheckExpectation(may_error=bool(problem), tags={problem} if problem else set())
        restricted_purchase = purchase_restricted(trip)
        if restricted_purchase == ERROR and trip[0] == "RAIL" and trip[1].strip() != trip[1]:
            restricted_purchase = purchase_restricted((trip[0], trip[1].strip(), *trip[2:]))
            out.may_error = True
            out.tags.add("train-number-spaces")
        if restricted_purchase == ERROR and trip[0] == "SHIP" and not trip[3]:
            restricted_purchase = True
            out.may_error = True
            out.tags.add("ship-without-class")
        if restricted_purchase == ERROR:
            return CheckExpectation(error=True)
        x = norm(doc)
        out.masked = mask(x)
        pairs = []
        naming = self.naming()
        for person, (reached, tag) in self.reach(x).items():
            for listing in naming.get(person, ()):
                pairs.append((listing, person, reached, tag))
        for listing in self.listings.values():
            if listing.murky:
                pairs.append((listing, None, MAYBE, "event-for-listing-lifted-in-future"))
        for listing, person, reached, tag in pairs:
            force, force_tag = self.in_force(listing, day)
            level = min(reached, force)
            if level == NO:
                continue
            tags = {t for t, v in ((tag, reached), (force_tag, force)) if v == MAYBE and t}
            out.restricted = max(out.restricted, level)
            if level == MAYBE:
                out.tags |= tags
            if not restricted_purchase:
                continue
            if trip is None or person is None or person == listing.subject and listing.kind == "ORGANIZATION":
                cover, cover_tag = (MAYBE, "event-for-listing-lifted-in-future") if person is None else (NO, "")
            else:
                cover, cover_tag = self.covered(listing, person, trip[0], day)
            denial = min(level, YES - cover + NO)
            if denial == NO:
                continue
            if denial == MAYBE:
                out.tags |= tags | ({cover_tag} if cover == MAYBE and cover_tag else set())
            out.deny[listing.lid] = max(out.deny.get(listing.lid, NO), denial)
            if person is not None:
                org = listing.name if listing.kind == "ORGANIZATION" else ""
                out.reasons[listing.lid] |= {
                    (role, org if role != "SUBJECT" else "", listing.case_number) for role in listing.roles(person)
                }
        out.deny = {lid: v for lid, v in out.deny.items() if v != NO}
        return out

    # ----------------------------------------------------------------- events

    def expect_event(self, line) -> EventExpectation:
        """`line` is the event as a dict, or the text of a feed line."""
        event = decode(line)
        if event is None:
            return EventExpectation({REJECTED})
        for name in ("event_id", "listing_id") + (("reference",) if event.get("type") == "EXEMPT" else ()):
            if not valid_identifier(event.get(name)):
                return EventExpectation({REJECTED}, rejected_field=name)
        event_id = event["event_id"]
        if event_id in self.applied:
            return EventExpectation({DUPLICATE} if self.applied[event_id] == content(event) else {REJECTED})
        if shape_problem(event):
            return EventExpectation({REJECTED})
        problems = {doc_problem(doc) for doc in event_documents(event)} - {""}
        if ERROR in problems:
            expectation = EventExpectation({REJECTED})
        else:
            expectation = self._fresh(event)
            if problems:
                expectation.outcomes.add(REJECTED)
                expectation.tags |= problems
        if event_id in self.rejected_ids:
            expectation.outcomes |= {DUPLICATE, REJECTED}
            expectation.tags.add("resent-rejected-event-id")
        return expectation

    def follow(self, line, expectation: EventExpectation, outcome: str) -> None:
        """Bring the model along with the service's outcome (one the model accepts)."""
        event = decode(line) or {}
        if outcome == APPLIED:
            if expectation.apply is not None:
                expectation.apply()
            self.applied[event["event_id"]] = content(event)
            self.seq += 1
            self._changed()
        elif outcome == REJECTED and valid_identifier(event.get("event_id")) and event["event_id"] not in self.applied:
            self.rejected_ids.add(event["event_id"])
        for tag in expectation.tags:
            self.hits[tag] += 1

    def _fresh(self, event: dict) -> EventExpectation:
        kind, lid = event["type"], event["listing_id"]
        listing = self.listings.get(lid)
        if kind == "LIST":
            if listing is not None:
                return EventExpectation({REJECTED})
            return self._list(event)
        if listing is None:
            return EventExpectation({REJECTED})
        if listing.murky or (not listing.active and listing.lifted_on > self.today):
            # Perhaps still active: if the service applies it, this listing is beyond the model.
            def murk():
                listing.murky = True

            return EventExpectation({APPLIED, REJECTED}, tags={"event-for-listing-lifted-in-future"}, apply=murk)
        if not listing.active:
            return EventExpectation({REJECTED})
        return getattr(self, "_" + kind.lower())(event, listing)

    def _list(self, event: dict) -> EventExpectation:
        subject = event["subject"]
        listing = Listing(
            lid=event["listing_id"],
            list_type=event["list_type"],
            listed_on=d(event["listed_on"]),
            expires_on=d(event.get("expires_on")),
            kind=subject["kind"],
            subject=norm(subject["document"]),
            extra=[norm(x) for x in event.get("extra_documents") or []],
            restricted=[(p["role"], norm(p["document"])) for p in event.get("restricted_persons") or []],
            name=subject["name"],
            case_number=event["case_number"],
        )
        expectation = EventExpectation({APPLIED})
        if listing.expires_on is not None and listing.expires_on <= listing.listed_on:
            expectation.outcomes.add(REJECTED)
            expectation.tags.add("dates-inverted")

        def apply():
            self.listings[listing.lid] = listing

        expectation.apply = apply
        return expectation

    def _delist(self, event: dict, listing: Listing) -> EventExpectation:
        return self._lift(listing, d(event["effective_on"]))

    def _perform(self, event: dict, listing: Listing) -> EventExpectation:
        return self._lift(listing, d(event["performed_on"]))

    def _lift(self, listing: Listing, on: date) -> EventExpectation:
        def apply():
            listing.active, listing.lifted_on = False, on

        return EventExpectation({APPLIED}, apply=apply)

    def _extend(self, event: dict, listing: Listing) -> EventExpectation:
        new = d(event["expires_on"])
        if listing.expires_on is None or new <= listing.expires_on:
            return EventExpectation({REJECTED})

        def apply():
            listing.expires_on = new

        return EventExpectation({APPLIED}, apply=apply)

    def _correct(self, event: dict, listing: Listing) -> EventExpectation:
        if "list_type" in event:
            return EventExpectation({REJECTED})
        outcomes, tags = {APPLIED}, set()
        listed_on = d(event["listed_on"]) if "listed_on" in event else listing.listed_on
        expires_on = d(event["expires_on"]) if "expires_on" in event else listing.expires_on
        kind, subject = listing.kind, listing.subject
        if "subject" in event:
            kind, subject = event["subject"]["kind"], norm(event["subject"]["document"])
        extra, extra_maybe, ghosts = list(listing.extra), listing.extra_maybe, set(listing.ghosts)
        if "extra_documents" in event:
            extra, extra_maybe, ghosts = [norm(x) for x in event["extra_documents"] or []], False, set()
        elif subject != listing.subject and listing.kind == "PERSON" and listing.extra:
            ghosts |= {(doc, listing.subject) for doc in listing.extra}
            if kind == "PERSON":
                extra_maybe = True
                tags.add("correct-new-subject-keeps-extras")
            else:
                extra = []
                outcomes.add(REJECTED)
                tags.add("kind-change-leftovers")
        restricted = list(listing.restricted)
        if "restricted_persons" in event:
            restricted = [(p["role"], norm(p["document"])) for p in event["restricted_persons"] or []]
        elif kind == "PERSON" and restricted:
            restricted = []
            outcomes.add(REJECTED)
            tags.add("kind-change-leftovers")
        if (kind == "PERSON" and restricted) or (kind == "ORGANIZATION" and extra and not extra_maybe):
            return EventExpectation({REJECTED})
        if expires_on is not None and expires_on <= listed_on:
            outcomes.add(REJECTED)
            tags.add("dates-inverted")

        name = event["subject"]["name"] if "subject" in event else listing.name
        case_number = event.get("case_number", listing.case_number)

        def apply():
            listing.name, listing.case_number = name, case_number
            before = listing.persons()
            listing.listed_on, listing.expires_on, listing.kind, listing.subject = listed_on, expires_on, kind, subject
            listing.extra, listing.extra_maybe, listing.ghosts = extra, extra_maybe, ghosts
            listing.restricted = restricted
            gone = before - listing.persons()
            for ex in self.exemptions.get(listing.lid, ()):
                if ex.persons & gone:
                    ex.certain, ex.narrow_certain, ex.tag = False, False, "exemption-after-person-removed"

        return EventExpectation(outcomes, tags=tags, apply=apply)

    def _exempt(self, event: dict, listing: Listing) -> EventExpectation:
        (certain, maybe, tags), narrow = self._exempted(event, listing), None
        if self.same_person_bindings:
            with self.as_if_bindings_went_one_way():
                narrow = self._exempted(event, listing)
        if not certain and not maybe:
            return EventExpectation({REJECTED})
        covered = frozenset(certain | maybe)
        outcomes = {APPLIED} if certain else {APPLIED, REJECTED}
        one_person = self._one_person(certain, maybe)
        person_tag = (
            ""
            if one_person
            else "exemption-person-ambiguous"
            if certain
            else next(iter(sorted(tags)), "exemption-person-ambiguous")
        )
        if person_tag:
            tags.add(person_tag)
        valid_from, valid_to = d(event["valid_from"]), d(event["valid_to"])
        if valid_to < valid_from:
            outcomes.add(REJECTED)
            tags.add("exempt-window-inverted")
        else:
            days = [valid_from + timedelta(days=i) for i in range(min((valid_to - valid_from).days + 1, 800))]
            if not any(self.in_force(listing, day)[0] == YES for day in days):
                outcomes.add(REJECTED)
                tags.add("exempt-listing-not-in-force")
        reference = event["reference"]
        new = Exemption(
            listing.lid, covered, one_person, frozenset(event["modes"]), valid_from, valid_to, reference, person_tag
        )
        if narrow is not None:
            with self.as_if_bindings_went_one_way():
                new.narrow_persons, new.narrow_certain = (
                    frozenset(narrow[0] | narrow[1]),
                    self._one_person(narrow[0], narrow[1]),
                )

        def apply():
            for ex in self.exemptions[listing.lid]:
                if ex.reference == reference and ex.persons & covered:
                    ex.certain, ex.narrow_certain, ex.tag = False, False, "exempt-same-reference"
            self.exemptions[listing.lid].append(new)

        return EventExpectation(outcomes, tags=tags, apply=apply)

    def _exempted(self, event: dict, listing: Listing) -> tuple[set, set, set]:
        """The entries of the listing (person documents) that the EXEMPT's document surely / perhaps
        stands for, and the silent places behind the 'perhaps'."""
        reach = self.reach(norm(event["document"]))
        persons = listing.persons()
        certain = {p for p in persons if reach.get(p, (NO, ""))[0] == YES}
        maybe = {p for p in persons if reach.get(p, (NO, ""))[0] == MAYBE}
        return certain, maybe, {reach[p][1] for p in maybe if reach[p][1]}

    def _one_person(self, certain: set, maybe: set) -> bool:
        """One person: every entry of the listing under a document of theirs is covered. When the
        document stands for entries that are not surely one person, which one is left open."""
        return bool(certain) and not maybe and all(self.reach(a).get(b, (NO, ""))[0] == YES for a in certain for b in certain)


# --------------------------------------------------------------------------- comparing


def compare_event(expectation: EventExpectation, status: str, field: str, seq: int | None, model_seq: int) -> str:
    """'' when the service's outcome is one the model accepts, else what is wrong."""
    if status not in expectation.outcomes:
        return f"outcome {status}, model expects {'/'.join(sorted(expectation.outcomes))}"
    if status == REJECTED and expectation.rejected_field is not None and field != expectation.rejected_field:
        return f"rejected naming field {field!r}, model expects {expectation.rejected_field!r}"
    if status == APPLIED and seq is not None and seq != model_seq + 1:
        return f"applied as sequence {seq}, model expects {model_seq + 1}"
    return ""


def compare_check(expectation: CheckExpectation, actual) -> str:
    """`actual` is ERROR or (decision, restricted, frozenset of the listing ids that caused the
    denial, masked document, frozenset of (listing id, role, organisation name, case number) of
    the denying matches)."""
    if actual == ERROR:
        return "" if expectation.error or expectation.may_error else f"service ERROR, model {expectation.decision}"
    if expectation.error:
        return f"service {actual!r}, model ERROR"
    decision, restricted, denied, masked, reasons = actual
    problems = []
    if decision != ("DENY" if denied else "ALLOW"):
        problems.append(f"decision {decision} with denying listings {sorted(denied)}")
    must = {lid for lid, v in expectation.deny.items() if v == YES}
    may = set(expectation.deny)
    if not must <= denied:
        problems.append(f"listings {sorted(must - denied)} must deny")
    if not denied <= may:
        problems.append(f"listings {sorted(denied - may)} must not deny")
    if expectation.restricted != MAYBE and restricted != (expectation.restricted == YES):
        problems.append(f"restricted {restricted}, model {expectation.restricted == YES}")
    if masked != expectation.masked:
        problems.append(f"masked document {masked!r}, model {expectation.masked!r}")
    wrong = {r for r in reasons if r[0] in may and r[1:] not in expectation.reasons[r[0]]}
    if wrong:
        problems.append(f"denying matches {sorted(wrong)}, model allows {dict(expectation.reasons)}")
    return "; ".join(problems)


# --------------------------------------------------------------------------- the random feed


def _resident(region: str, birth: str, seq: int) -> str:
    body = f"{region}{birth}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")


def _uscc(body16: str) -> str:
    body = body16 + "1"
    return body + uscc.calc_check_digit(body)


def _resident_with_x() -> str:
    for seq in range(1, 999):
        number = _resident("440106", "19681102", seq)
        if number.endswith("X"):
            return number
    raise AssertionError("no check character X")


RESIDENTS = [
    {"type": "RESIDENT_ID", "number": _resident("110105", "19650312", 123)},  # also sent in its 15-digit form
    {"type": "RESIDENT_ID", "number": _resident("510107", "19850315", 123)},
    {"type": "RESIDENT_ID", "number": _resident_with_x()},
    {"type": "RESIDENT_ID", "number": _resident("320106", "19920708", 456)},
    {"type": "RESIDENT_ID", "number": _resident("310115", "19750505", 222)},
    {"type": "RESIDENT_ID", "number": _resident("330102", "19880715", 1)},
    {"type": "RESIDENT_ID", "number": _resident("420102", "19791231", 77)},
    {"type": "RESIDENT_ID", "number": _resident("650102", "20000229", 318)},
]
PASSPORTS = [
    {"type": "PASSPORT", "number": "E12345678", "country": "CHN"},
    {"type": "PASSPORT", "number": "EA7654321"},  # country CHN by default
    {"type": "PASSPORT", "number": "E12345678", "country": "USA"},  # same number, another document
    {"type": "HK_MACAO_PERMIT", "number": "C01234567"},
]
# The second organisation's code has registration department N (which stdnum's validate refuses).
ORGS = [{"type": "USCC", "number": _uscc("9111000060003734")}, {"type": "USCC", "number": _uscc("N131011566070758")}]
OWNER = {0: 0, 1: 1, 2: 4, 3: 3}  # passport or permit -> the resident it is bound to
SHARED = 1  # the one that the feed also binds to other people
NEVER_LISTED = [
    {"type": "RESIDENT_ID", "number": _resident("110101", "19900101", 5)},
    {"type": "PASSPORT", "number": "G00000001", "country": "CHN"},
]
ROLES = ["LEGAL_REPRESENTATIVE", "PRINCIPAL", "RESPONSIBLE_PERSON", "ACTUAL_CONTROLLER"]
REASONS = [
    "PERFORMED",
    "SETTLED",
    "CREDITOR_APPLICATION",
    "NO_ASSETS",
    "SUSPENDED",
    "NOT_ENFORCED",
    "TERMINATED",
    "EXPIRED",
    "REVOKED",
]
NAMES = ["张伟", "李娜", "王强", "赵敏", "孙磊", "陈静", "刘洋", "周杰"]


def spellings(doc: dict) -> list[dict]:
    """Ways a feed or a caller may write the same document."""
    out = [doc]
    number = doc["number"]
    if doc["type"] == "RESIDENT_ID":
        out.append({**doc, "number": f"{number[:6]} {number[6:14]}-{number[14:].lower()}"})
        if number.startswith("11010519"):  # issued before 1999: its 15-digit form
            out.append({**doc, "number": number[:6] + number[8:17]})
    else:
        out.append({**doc, "number": f"{number[:2].lower()}-{number[2:]}"})
        if doc["type"] == "PASSPORT" and doc.get("country", "CHN") == "CHN":
            out.append({"type": "PASSPORT", "number": number} if "country" in doc else {**doc, "country": "CHN"})
    return out


# Checked after every chunk: each document of the pool, in several spellings, and two never listed.
CHECK_DOCUMENTS = (
    [r for doc in RESIDENTS for r in spellings(doc)[:1]]
    + [spellings(RESIDENTS[0])[2]]
    + [spellings(RESIDENTS[2])[1]]
    + [p for doc in PASSPORTS for p in spellings(doc)[:1]]
    + [spellings(PASSPORTS[1])[1], spellings(PASSPORTS[0])[2], spellings(ORGS[1])[1]]
    + ORGS
    + NEVER_LISTED
)
_R = RESIDENTS[3]["number"]
_MONTH_13 = _R[:10] + "13" + _R[12:17]
# Checked once per chunk (FLIGHT, today): invalid documents, and two the contract is silent on.
BAD_DOCUMENTS = [
    {"type": "RESIDENT_ID", "number": _R[:17] + ("0" if _R[17] != "0" else "1")},  # wrong check character
    {"type": "RESIDENT_ID", "number": _R[:17]},
    {"type": "RESIDENT_ID", "number": _MONTH_13 + ric.calc_check_digit(_MONTH_13 + "0")},
    {"type": "RESIDENT_ID", "number": _R, "country": "USA"},
    {"type": "USCC", "number": ORGS[0]["number"][:17] + ("0" if ORGS[0]["number"][17] != "0" else "1")},
    {"type": "USCC", "number": "I" + ORGS[0]["number"][1:]},
    {"type": "PASSPORT", "number": "E123"},
    {"type": "PASSPORT", "number": "E" * 21},
    {"type": "PASSPORT", "number": "E12.345678"},
    {"type": "PASSPORT", "number": "E12345678", "country": "US"},
]
TRIPS = [
    None,
    ("FLIGHT", "", "", ""),
    ("RAIL", "G1234", "", ""),
    ("RAIL", "g12", "SECOND", ""),
    ("RAIL", "D301", "FIRST", ""),
    ("RAIL", "D301", "SECOND", ""),
    ("RAIL", "C2001", "BUSINESS", ""),
    ("RAIL", "C2001", "NO_SEAT", ""),
    ("RAIL", "K1", "SOFT_SLEEPER", ""),
    ("RAIL", "K1", "HARD_SLEEPER", ""),
    ("RAIL", "T99", "DELUXE_SOFT_SLEEPER", ""),
    ("RAIL", "1461", "SOFT_SLEEPER", ""),
    ("RAIL", "Z9", "FIRST", ""),
    ("SHIP", "", "", "SPECIAL"),
    ("SHIP", "", "", "SECOND"),
    ("SHIP", "", "", "THIRD"),
    ("SHIP", "", "", "FOURTH"),
    ("SHIP", "", "", "SEAT"),
    ("RAIL", "C1", "DELUXE_SOFT_SLEEPER", ""),
    ("RAIL", "S5", "SOFT_SLEEPER", ""),
]
BAD_TRIPS = [
    ("RAIL", "K1", "", ""),
    ("RAIL", "D301", "", ""),
    ("RAIL", "X100", "FIRST", ""),
    ("RAIL", "G12345", "", ""),
    ("SHIP", "", "", ""),
    ("RAIL", " G12 ", "", ""),
]


class FeedGenerator:
    """Seeded random events that collide: a small pool of people, organisations whose
    representatives are debtors themselves, documents moved between people, bound passports
    on listings lifted later, exemptions on expiry days, duplicates and conflicts, events for
    unknown or lifted listings, reused listing ids, and identifiers at and over their bound.
    It keeps its own rough idea of the listings (it never asks the model or the service)."""

    def __init__(self, seed: int, today: date):
        self.rnd = random.Random(seed)
        self.seed = seed
        self.today = today
        self.count = 0
        self.sent: list[dict] = []
        self.shadow: dict[str, dict] = {}  # listing_id -> rough state
        self.queue: list[dict] = []  # events already decided on, sent next
        self.active: list[str] = []  # listing ids perhaps active (the shadow says for sure)
        self.sent_objects: list[dict] = []  # the events of `sent` that are JSON objects
        self.clock = datetime(today.year, today.month, today.day, 8, tzinfo=timezone(timedelta(hours=8)))

    def day(self, offset: int) -> str:
        return (self.today + timedelta(days=offset)).isoformat()

    def feed(self, n: int) -> list[dict]:
        return [self.next() for _ in range(n)]

    def _event(self, type_: str, listing_id: str, **fields) -> dict:
        self.count += 1
        r = self.rnd.random()
        if r < 0.01:
            event_id = f"{self.seed}-{self.count}-".ljust(128, "e")  # exactly 128 bytes: valid
        elif r < 0.02:
            event_id = f"{self.seed}-{self.count}-" + "事" * ((128 - len(f"{self.seed}-{self.count}-")) // 3)
        else:
            event_id = f"e{self.seed}-{self.count}"
        self.clock += timedelta(seconds=self.rnd.randint(1, 600))
        return {"event_id": event_id, "type": type_, "occurred_at": self.clock.isoformat(), "listing_id": listing_id, **fields}

    def next(self) -> dict:
        if self.queue:
            event = self.queue.pop(0)
            self.sent.append(event)
            self.sent_objects.append(event)
            return event
        active = [lid for lid in self.active if self.shadow[lid]["active"]]
        self.active = active
        weights = {
            "list": 25 if len(active) < 5 else 10 if len(active) < 10 else 3,
            "list_reuse": 1.5,
            "delist": 7,
            "perform": 3,
            "extend": 6,
            "correct": 16,
            "exempt": 12,
            "exempt_everywhere": 5,
            "stale": 4,
            "duplicate": 4,
            "reordered": 1,
            "conflict": 3,
            "bad_identifier": 1.2,
            "bad_document": 0.8,
            "malformed": 1.5,
            "list_by_bound_document": 1,
        }
        if not active:
            weights.update(delist=0, perform=0, extend=0, correct=0, exempt=0, exempt_everywhere=0)
        if not self.sent:
            weights.update(duplicate=0, reordered=0, conflict=0, list_reuse=0)
        kind = self.rnd.choices(list(weights), list(weights.values()))[0]
        event = getattr(self, "_gen_" + kind)(active)
        self.sent.append(event)
        if isinstance(event, dict):
            self.sent_objects.append(event)
        return event

    # --------------------------------------------------------------- pieces

    def _doc(self, doc: dict) -> dict:
        return dict(self.rnd.choice(spellings(doc)))

    def _person_doc(self) -> tuple[int, dict]:
        """(pool index, document): mostly a resident ID, sometimes a passport (index >= 100)."""
        if self.rnd.random() < 0.03:
            i = self.rnd.randrange(len(PASSPORTS))
            return 100 + i, PASSPORTS[i]
        i = self.rnd.randrange(len(RESIDENTS))
        return i, RESIDENTS[i]

    def _extras_for(self, subject_index: int) -> list[int]:
        own = [p for p, owner in OWNER.items() if owner == subject_index]
        chosen = [p for p in own if self.rnd.random() < 0.7]
        if self.rnd.random() < 0.05:
            chosen.append(SHARED)  # someone else's passport: moved between people, or bound to two
        return sorted(set(chosen) - {subject_index - 100})

    def _dates(self) -> tuple[str, str | None]:
        r = self.rnd.random()
        listed = self.rnd.randint(-5, 5) if r < 0.45 else self.rnd.randint(-800, -6) if r < 0.9 else self.rnd.randint(6, 60)
        r = self.rnd.random()
        if r < 0.25:
            return self.day(listed), None
        if r < 0.7:
            expires = self.rnd.randint(-3, 8)
        elif r < 0.9:
            expires = listed + self.rnd.choice([1, 2, 30, 365, 730])
        else:
            expires = self.rnd.randint(200, 400)
        if expires <= listed:
            expires = listed + self.rnd.choice([1, 2, 10, 730])
        if self.rnd.random() < 0.02:
            expires = listed - self.rnd.choice([0, 1])  # on or before listed_on
        return self.day(listed), self.day(expires)

    def _restricted(self) -> list[tuple[str, int]]:
        return [(self.rnd.choice(ROLES), self._person_doc()[0]) for _ in range(self.rnd.choice([1, 1, 2, 2, 3]))]

    @staticmethod
    def _pool(index: int) -> dict:
        return PASSPORTS[index - 100] if index >= 100 else RESIDENTS[index]

    def _persons_json(self, restricted: list[tuple[str, int]]) -> list[dict]:
        return [{"role": role, "name": self.rnd.choice(NAMES), "document": self._doc(self._pool(i))} for role, i in restricted]

    def _listing_id(self) -> str:
        n = len(self.shadow) + 1
        if self.rnd.random() < 0.02:
            return f"L{self.seed}-{n}-".ljust(128, "x")
        return f"L{self.seed}-{n}"

    def _pick(self, active: list[str]) -> str:
        return self.rnd.choice(active)

    def _reference(self, lid: str) -> str:
        if self.rnd.random() < 0.03:
            return f"{zlib.crc32(lid.encode()) % 100:02d}" + "执" * 42  # exactly 128 bytes
        return f"({self.today.year})京0105执{zlib.crc32(lid.encode()) % 10000}号之{self.rnd.randint(1, 3)}"

    # --------------------------------------------------------------- event kinds

    def _gen_list(self, active, listing_id=None) -> dict:
        lid = listing_id or self._listing_id()
        listed_on, expires_on = self._dates()
        fields = dict(
            list_type=self.rnd.choice(["DISHONEST", "CONSUMPTION_RESTRICTION"]),
            case_number=f"({self.today.year})京0105执{self.count}号",
            court="北京市朝阳区人民法院",
            listed_on=listed_on,
            expires_on=expires_on,
        )
        if self.rnd.random() < 0.3:
            org = self.rnd.randrange(len(ORGS))
            restricted = self._restricted()
            fields.update(
                subject={"kind": "ORGANIZATION", "name": "示例贸易有限公司", "document": self._doc(ORGS[org])},
                restricted_persons=self._persons_json(restricted),
            )
            state = {"kind": "ORGANIZATION", "subject": org, "extra": [], "restricted": restricted}
        else:
            subject, _ = self._person_doc()
            extra = self._extras_for(subject)
            fields.update(
                subject={"kind": "PERSON", "name": self.rnd.choice(NAMES), "document": self._doc(self._pool(subject))},
                extra_documents=[self._doc(PASSPORTS[p]) for p in extra],
            )
            if self.rnd.random() < 0.1:
                fields["restricted_persons"] = []
            state = {"kind": "PERSON", "subject": subject, "extra": extra, "restricted": []}
        if listing_id is None:
            self.shadow[lid] = {**state, "active": True, "expires_on": expires_on}
            self.active.append(lid)
        return self._event("LIST", lid, **fields)

    def _gen_list_by_bound_document(self, active) -> dict:
        """A listing that names a person by their passport or permit (bound to their resident ID
        by a listing of theirs), alone or next to their resident ID."""
        p = self.rnd.randrange(len(PASSPORTS))
        event = self._gen_list(active)
        state = self.shadow[event["listing_id"]]
        if state["kind"] == "PERSON":
            event["subject"] = {**event["subject"], "document": self._doc(PASSPORTS[p])}
            event["extra_documents"] = []
            state.update(subject=100 + p, extra=[])
        else:
            named = [(self.rnd.choice(ROLES), 100 + p)] + [(self.rnd.choice(ROLES), OWNER[p])] * (self.rnd.random() < 0.4)
            event["restricted_persons"] = self._persons_json(named)
            state["restricted"] = named
        return event

    def _gen_list_reuse(self, active) -> dict:
        return self._gen_list(active, listing_id=self.rnd.choice(list(self.shadow) or ["L-none"]))

    def _lift_day(self) -> str:
        r = self.rnd.random()
        return self.day(self.rnd.randint(-400, -1) if r < 0.96 else 0 if r < 0.985 else self.rnd.randint(1, 10))

    def _gen_delist(self, active) -> dict:
        lid = self._pick(active)
        self.shadow[lid]["active"] = False
        return self._event("DELIST", lid, reason=self.rnd.choice(REASONS), effective_on=self._lift_day())

    def _gen_perform(self, active) -> dict:
        lid = self._pick(active)
        self.shadow[lid]["active"] = False
        return self._event("PERFORM", lid, performed_on=self._lift_day())

    def _gen_extend(self, active) -> dict:
        lid = self._pick(active)
        current = self.shadow[lid]["expires_on"]
        base = date.fromisoformat(current) if current else self.today
        new = (base + timedelta(days=self.rnd.choice([-3, 0, 1, 1, 2, 5, 30, 400]))).isoformat()
        if current and new > current:
            self.shadow[lid]["expires_on"] = new
        return self._event("EXTEND", lid, expires_on=new)

    def _gen_stale(self, active) -> dict:
        lifted = [lid for lid, s in self.shadow.items() if not s["active"]]
        lid = self.rnd.choice(lifted) if lifted and self.rnd.random() < 0.7 else f"L{self.seed}-unknown-{self.count}"
        kind = self.rnd.choice(["DELIST", "PERFORM", "EXTEND", "CORRECT", "EXEMPT"])
        fields = {
            "DELIST": {"reason": "SETTLED", "effective_on": self.day(0)},
            "PERFORM": {"performed_on": self.day(0)},
            "EXTEND": {"expires_on": self.day(900)},
            "CORRECT": {"court": "北京市第二中级人民法院"},
            "EXEMPT": {
                "document": self._doc(RESIDENTS[0]),
                "modes": ["FLIGHT"],
                "valid_from": self.day(0),
                "valid_to": self.day(3),
                "reference": self._reference(lid),
            },
        }[kind]
        return self._event(kind, lid, **fields)

    def _gen_correct(self, active) -> dict:
        lid = self._pick(active)
        s = self.shadow[lid]
        options = {"dates": 2, "text": 1, "list_type": 0.3}
        if s["kind"] == "PERSON":
            options.update(extras=4, extras_null=1, subject_only=1, subject_with_extras=3, same_subject=1, to_org=1)
        else:
            options.update(restricted=5, org_subject=1, to_person=1)
        choice = self.rnd.choices(list(options), list(options.values()))[0]
        fields: dict = {}
        if choice == "dates":
            listed_on, expires_on = self._dates()
            r = self.rnd.random()
            if r < 0.4:
                fields["listed_on"] = listed_on
            if r > 0.25:
                fields["expires_on"] = expires_on
                s["expires_on"] = expires_on
        elif choice == "text":
            fields["court"] = "北京市第二中级人民法院"
        elif choice == "list_type":
            fields.update(list_type="DISHONEST", court="北京市第三中级人民法院")
        elif choice in ("extras", "extras_null"):
            s["extra"] = self._extras_for(s["subject"]) if choice == "extras" else []
            if self.rnd.random() < 0.15 and choice == "extras":
                s["extra"] = sorted(set(s["extra"]) | {SHARED})
            fields["extra_documents"] = [self._doc(PASSPORTS[p]) for p in s["extra"]] if choice == "extras" else None
        elif choice in ("subject_only", "subject_with_extras", "same_subject"):
            subject = s["subject"] if choice == "same_subject" else self._person_doc()[0]
            s["subject"] = subject
            fields["subject"] = {"kind": "PERSON", "name": self.rnd.choice(NAMES), "document": self._doc(self._pool(subject))}
            if choice == "subject_with_extras":
                s["extra"] = self._extras_for(subject)
                fields["extra_documents"] = [self._doc(PASSPORTS[p]) for p in s["extra"]]
        elif choice in ("restricted", "to_org"):
            restricted = self._restricted()
            if choice == "restricted" and s["restricted"] and self.rnd.random() < 0.5:
                restricted = s["restricted"][:-1] + restricted[:1]  # keep some, move one
            fields["restricted_persons"] = self._persons_json(restricted)
            if choice == "to_org":
                org = self.rnd.randrange(len(ORGS))
                fields["subject"] = {"kind": "ORGANIZATION", "name": "示例贸易有限公司", "document": self._doc(ORGS[org])}
                if self.rnd.random() < 0.5:
                    fields["extra_documents"] = self.rnd.choice([[], None])
                s.update(kind="ORGANIZATION", subject=org, extra=[])
            s["restricted"] = restricted
        elif choice == "org_subject":
            s["subject"] = self.rnd.randrange(len(ORGS))
            fields["subject"] = {"kind": "ORGANIZATION", "name": "另一贸易有限公司", "document": self._doc(ORGS[s["subject"]])}
        elif choice == "to_person":
            subject = self._person_doc()[0]
            fields["subject"] = {"kind": "PERSON", "name": self.rnd.choice(NAMES), "document": self._doc(self._pool(subject))}
            if self.rnd.random() < 0.6:
                fields["restricted_persons"] = self.rnd.choice([[], None])
            s.update(kind="PERSON", subject=subject, restricted=[], extra=[])
        return self._event("CORRECT", lid, **fields)

    def _gen_exempt(self, active) -> dict:
        lid = self._pick(active)
        s = self.shadow[lid]
        persons = [s["subject"]] if s["kind"] == "PERSON" else [i for _, i in s["restricted"]]
        bound = [
            100 + p
            for other in map(self.shadow.get, active)
            if other["kind"] == "PERSON"
            for p in other["extra"]
            if other["subject"] in persons
        ]
        r = self.rnd.random()
        by_passport = [OWNER[i - 100] for i in persons if i >= 100]
        if by_passport and r < 0.3:
            doc = RESIDENTS[self.rnd.choice(by_passport)]  # the person named by passport, asked for by ID
        elif r < 0.5 and persons:
            doc = self._pool(self.rnd.choice(persons))
        elif r < 0.75 and bound:
            doc = self._pool(self.rnd.choice(bound))
        elif r < 0.85:
            doc = ORGS[s["subject"]] if s["kind"] == "ORGANIZATION" else self.rnd.choice(ORGS)
        else:
            doc = self._pool(self._person_doc()[0])
        expires = s["expires_on"]
        anchors = [-1, 0, 1, self.rnd.randint(-3, 20)]
        if expires:
            e = (date.fromisoformat(expires) - self.today).days
            anchors += [e - 1, e, e + 1]
        start = self.rnd.choice(anchors)
        length = self.rnd.choice([0, 0, 1, 2, 3, 7, 30, -1])
        modes = self.rnd.sample(["FLIGHT", "RAIL", "SHIP"], self.rnd.randint(1, 3))
        return self._event(
            "EXEMPT",
            lid,
            document=self._doc(doc),
            modes=modes,
            valid_from=self.day(start),
            valid_to=self.day(start + length),
            reference=self._reference(lid),
        )

    def _gen_exempt_everywhere(self, active) -> dict:
        """The court exempts one person on every listing of theirs (so that the trip is allowed),
        under their resident ID or a passport bound to them."""
        person = self.rnd.randrange(len(RESIDENTS))
        mine = [
            lid
            for lid in active
            if (self.shadow[lid]["kind"] == "PERSON" and self.shadow[lid]["subject"] == person)
            or person in [i for _, i in self.shadow[lid]["restricted"]]
        ]
        passports = [p for p, owner in OWNER.items() if owner == person]
        start = self.rnd.choice([-1, 0, 0, 1, self.rnd.randint(2, 30)])
        end = start + self.rnd.choice([0, 1, 3, 10, 60])
        modes = self.rnd.sample(["FLIGHT", "RAIL", "SHIP"], self.rnd.choice([1, 2, 3, 3]))
        for lid in mine or active[:1]:
            doc = PASSPORTS[passports[0]] if passports and self.rnd.random() < 0.3 else RESIDENTS[person]
            self.queue.append(
                self._event(
                    "EXEMPT",
                    lid,
                    document=self._doc(doc),
                    modes=modes,
                    valid_from=self.day(start),
                    valid_to=self.day(end),
                    reference=self._reference(lid),
                )
            )
        return self.queue.pop(0)

    def _sent_event(self) -> dict:
        return dict(self.rnd.choice(self.sent_objects))

    def _gen_duplicate(self, active):
        event = self.rnd.choice(self.sent)
        return dict(event) if isinstance(event, dict) else event

    def _gen_reordered(self, active) -> dict:
        return dict(reversed(list(self._sent_event().items())))

    def _gen_conflict(self, active) -> dict:
        event = self._sent_event()
        changes = {
            "LIST": ("court", "上海市浦东新区人民法院"),
            "DELIST": ("reason", "REVOKED"),
            "PERFORM": ("performed_on", self.day(-30)),
            "EXTEND": ("expires_on", self.day(999)),
            "CORRECT": ("case_number", "(2020)京0105执1号"),
            "EXEMPT": ("valid_to", self.day(400)),
        }
        if event.get("type") == "EXEMPT":
            event["modes"] = ["RAIL"] if event.get("modes") == ["FLIGHT"] else ["FLIGHT"]
            return event
        name, value = changes.get(event.get("type"), ("grounds", "其他"))
        event[name] = (
            value if event.get(name) != value else value + "之一" if name in ("court", "case_number") else self.day(61)
        )
        return event

    def _gen_bad_document(self, active) -> dict:
        event = self.rnd.choice([self._gen_list, self._gen_exempt if active else self._gen_list])(active)
        if event["type"] == "LIST":
            self.shadow[event["listing_id"]]["active"] = False  # never listed: later events for it are for an unknown id
        bad = self.rnd.choice([doc for doc in BAD_DOCUMENTS if doc_problem(doc) == ERROR])
        if event["type"] == "EXEMPT":
            event["document"] = bad
        elif event["subject"]["kind"] == "PERSON" and bad["type"] != "USCC":
            event["subject"] = {**event["subject"], "document": bad}
        else:
            event["subject"] = {"kind": "ORGANIZATION", "name": "示例贸易有限公司", "document": BAD_DOCUMENTS[4]}
            event.pop("extra_documents", None)
        return event

    def _gen_malformed(self, active):
        """Something wrong with the line itself: not JSON, not an object, wrong types, missing
        fields, control characters, a name far too long, absurd nesting."""
        maker = self.rnd.choice(
            [self._gen_list] + [self._gen_exempt, self._gen_delist, self._gen_extend, self._gen_correct] * bool(active)
        )
        event = maker(active)  # (the shadow now believes what the rejected line says: a little more collision)
        if event["type"] == "LIST":
            self.shadow[event["listing_id"]]["active"] = False
        text = json.dumps(event, ensure_ascii=False)
        kind = self.rnd.randrange(12)
        if kind == 0:
            return text[: self.rnd.randrange(1, len(text) - 1)]  # cut short
        if kind == 1:
            return self.rnd.choice(["[1, 2]", '"LIST"', "null", "42", ""])
        if kind == 2:
            return text[:-1] + ', "grounds": NaN}'
        if kind == 3:
            event["occurred_at"] = self.rnd.choice([event["occurred_at"][:19], "yesterday", 20261128])
        elif kind == 4:
            event["type"] = self.rnd.choice(["FOO", "list", None])
        elif kind == 5:
            event["note"] = json.loads("[" * 200 + "]" * 200)
        elif kind == 6:
            required = {
                "LIST": ["list_type", "case_number", "court", "listed_on", "subject"],
                "DELIST": ["reason", "effective_on"],
                "EXTEND": ["expires_on"],
                "EXEMPT": ["document", "modes", "valid_from", "valid_to", "reference"],
            }
            event.pop(self.rnd.choice(required.get(event["type"], []) + ["occurred_at"]))
        elif kind == 7 and event["type"] in ("LIST", "CORRECT") and "subject" in event:
            name = self.rnd.choice(["张\x00伟", "李\u2028娜", "王" * 5000])
            event["subject"] = {**event["subject"], "name": name}
        elif kind == 8 and event["type"] == "LIST":
            event[self.rnd.choice(["subject", "extra_documents", "restricted_persons", "listed_on", "case_number"])] = (
                self.rnd.choice([[], {"a": 1}, 20260101, "x", "2026-02-30"])
            )
            if isinstance(event.get("subject"), list) and event["subject"] == []:
                event["subject"] = "PERSON"
        elif kind == 9 and event["type"] == "EXEMPT":
            event[self.rnd.choice(["modes", "valid_from", "document"])] = self.rnd.choice(
                [[], ["BUS"], "FLIGHT", "tomorrow", {"type": "DRIVING_LICENCE", "number": "X1234567"}, {"type": "PASSPORT"}]
            )
        elif kind == 10 and event["type"] == "DELIST":
            event["reason"] = self.rnd.choice(["PAID", None, 3])
        else:
            event["listed_on" if event["type"] == "LIST" else "expires_on" if event["type"] == "EXTEND" else "type"] = (
                self.rnd.choice(["2026-13-01", "01/02/2026", None])
            )
        return event

    def _gen_bad_identifier(self, active) -> dict:
        name = self.rnd.choice(["event_id", "listing_id", "reference"])
        value = self.rnd.choice(["x" * 129, "事" * 43, "ev\x07bell", "ev\u2028line", ""])
        lid = self._pick(active) if active else f"L{self.seed}-1"
        if name == "reference":
            event = self._gen_exempt(active) if active else self._gen_stale(active)
            if event["type"] == "EXEMPT":
                event["valid_to"] = max(event["valid_from"], event["valid_to"])  # one fault per event
            else:
                name = "event_id"
        else:
            event = self._event("DELIST", lid, reason="SETTLED", effective_on=self.day(0))
        event[name] = value
        return event
