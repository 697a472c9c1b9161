"""The fast decoder (msgspec typed decoding) against the reference parser (feedline's
JSON decoding + events.parse_event), field by field, on a large random feed of valid
lines of every event type and of mutated ones: wherever the fast decoder takes a line,
its event is the reference's (every field, its type, the content digest); wherever it
does not, the loader's answer is the reference's (same rejection, same field)."""

from __future__ import annotations

import dataclasses
import json
import random
from enum import Enum

from feedgen import mutate
from sanction_service.loaders import synth
from sanction_service.loaders.feed import decode_line, decode_line_reference

from sanction_service.fastdecode import decode_event
from sanction_service.feedline import parse_text, parse_text_reference

SEED = 11
LISTINGS = 4000
MUTATED = 8000


def _lines() -> list[str]:
    rng = random.Random(SEED)
    events = list(synth.generate_events(SEED, LISTINGS))
    valid = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in events]
    mutated = [mutate(rng, rng.choice(events)) for _ in range(MUTATED)]
    return valid + mutated


def _answer(line):
    """A FeedLine as comparable values (exceptions do not compare equal)."""
    if line is None:
        return None
    error = None if line.error is None else (line.error.field, line.error.reason)
    return (line.line, line.raw, line.event, line.event_id, error)


def assert_same(fast, reference, where="event"):
    """Equal values of the same types, recursively through dataclasses and tuples."""
    assert type(fast) is type(reference), (where, type(fast), type(reference))
    if dataclasses.is_dataclass(reference):
        for f in dataclasses.fields(reference):
            assert_same(getattr(fast, f.name), getattr(reference, f.name), f"{where}.{f.name}")
    elif isinstance(reference, tuple):
        assert len(fast) == len(reference), where
        for i, (a, b) in enumerate(zip(fast, reference)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert fast == reference, where
        if isinstance(reference, Enum):
            assert fast is reference, where


def test_fast_decoder_gives_the_reference_event_field_by_field_or_falls_back():
    lines = _lines()
    taken = {True: 0, False: 0}
    valid_taken = 0
    for number, text in enumerate(lines, 1):
        raw = text.encode("utf-8", "surrogatepass")
        reference = decode_line_reference(number, raw)
        fast = decode_event(raw)
        if fast is not None:
            assert reference is not None and reference.error is None, (number, text, reference)
            assert_same(fast, reference.event)
            if number <= len(lines) - MUTATED:
                valid_taken += 1
        taken[fast is not None] += 1
        # What the loader answers: the fast event, or exactly the reference's rejection.
        assert _answer(decode_line(number, raw)) == _answer(reference), (number, text)
        if "\ud800" not in text and "\udfff" not in text:
            assert _answer(parse_text(number, text)) == _answer(parse_text_reference(number, text)), (number, text)
            text_event = decode_event(text)
            assert (text_event is None) == (fast is None) and (fast is None or text_event == fast)
    valid = len(lines) - MUTATED
    # The fast path takes every valid synthetic line, and the mutated lines exercise both sides.
    assert valid_taken == valid, (valid_taken, valid)
    assert taken[False] > MUTATED // 3 and taken[True] > valid + MUTATED // 10, taken


def test_bulk_workers_list_preparation_is_the_reference_record_journal_and_indexes():
    """bulkprep.prepare_list (struct straight to stored bytes) against the reference way
    (reference parser, lifecycle.new_listing / with_event, index_entries, declared_bindings),
    on every line of the random feed: where it takes a line, every byte is the reference's."""
    import functools

    from sanction_service import lifecycle
    from sanction_service.bulkprep import prepare_list
    from sanction_service.identity import DocumentKeys, document_key
    from sanction_service.store import dumps

    key_of = functools.partial(document_key, b"k" * 32)
    keys = DocumentKeys(b"k" * 32)  # with the keyed-prefix route for canonical resident IDs
    lines = _lines()
    taken = 0
    for number, text in enumerate(lines, 1):
        raw = text.encode("utf-8", "surrogatepass")
        prepared = prepare_list(raw, keys)
        assert prepared == prepare_list(raw, key_of)
        reference = decode_line_reference(number, raw)
        if prepared is None:
            continue
        taken += 1
        event = reference.event
        assert reference.error is None and event.type.value == "LIST", (number, text)
        record = lifecycle.with_event(lifecycle.new_listing(event, key_of), event.event_id)
        entries = lifecycle.index_entries(record)
        bindings = lifecycle.declared_bindings(record)
        added = sorted(entries.keys() | {d for d, _ in bindings})
        journal = dumps(
            {"event_id": event.event_id, "type": "LIST", "listing_id": event.listing_id, "added": [k.hex() for k in added]}
        )
        assert prepared == (
            event.event_id,
            event.listing_id,
            event.digest,
            event.occurred_at,
            event.list_type.value,
            json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode(),
            b"".join(k + event.listing_id.encode() + v + b"+" for k, v in entries.items()),
            b"".join(d + p for d, p in sorted(bindings)),
            journal,
        ), (number, text)
    lists = sum('"type":"LIST"' in line for line in lines[: len(lines) - MUTATED])
    assert taken >= lists, (taken, lists)


def test_follow_up_preparation_is_the_reference_event():
    """bulkprep.prepare_event's DELIST / PERFORM / EXTEND (no Event built) against the
    reference parser, on every line of the random feed: where it takes a line, every
    value the writer reads is the reference event's."""
    from sanction_service.bulkprep import prepare_event
    from sanction_service.identity import DocumentKeys

    keys = DocumentKeys(b"k" * 32)
    lines = _lines()
    taken = follow_ups = 0
    for number, text in enumerate(lines, 1):
        raw = text.encode("utf-8", "surrogatepass")
        reference = decode_line_reference(number, raw)
        event = reference.event if reference is not None else None
        if event is not None and event.type.value in ("DELIST", "PERFORM", "EXTEND") and number <= len(lines) - MUTATED:
            follow_ups += 1
        for given in (raw, text):
            fast = prepare_event(given, keys)
            if fast is None or fast[0]:
                continue
            taken += given is raw
            assert reference.error is None, (number, text)
            day = event.expires_on if event.type.value == "EXTEND" else event.effective_on
            assert fast[1] == (
                event.type.value,
                event.event_id,
                event.listing_id,
                event.digest,
                event.occurred_at,
                event.reason,
                day.isoformat(),
            ), (number, text)
    assert follow_ups > 100 and taken >= follow_ups, (taken, follow_ups)


def test_canonical_document_shortcuts_are_normalize_and_document_key():
    """bulkprep keys a document that `normalize` would return unchanged without building
    the Document (resident IDs, USCCs, passports, permits); on every document of the
    synthetic feed and on numbers and countries one step away from canonical, it gives
    what normalize + mask_number + document_key give, or leaves the document to them."""
    from conftest import PEPPER
    from stdnum.cn import uscc

    from sanction_service import bulkprep
    from sanction_service.fastdecode import _Doc, _Fallback
    from sanction_service.identity import DocumentKeys

    rng = random.Random(SEED)
    key_of = DocumentKeys(PEPPER)
    docs = []
    for e in synth.generate_events(SEED, 1500):
        subject = e.get("subject") or {}
        for d in [subject.get("document"), *(e.get("extra_documents") or []), e.get("document")]:
            if d:
                docs.append(d)
        docs += [p["document"] for p in e.get("restricted_persons") or []]
    assert {d["type"] for d in docs} >= {"RESIDENT_ID", "USCC", "PASSPORT"}

    def near(number: str) -> list[str]:
        i = rng.randrange(len(number))
        other = rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return [
            number,
            number.lower(),
            number + "\n",
            " " + number,
            number[:i] + other + number[i + 1 :],
            number[:4],
            number[:5],
            number * 2,
        ]

    types = ["RESIDENT_ID", "USCC", "PASSPORT", "HK_MACAO_PERMIT", "TAIWAN_PERMIT", "FOREIGN_PERMANENT_RESIDENT_ID", "NOPE"]
    countries = [bulkprep.UNSET, None, "", "CHN", "chn", "USA", "US", "USA\n", "CHN "]
    taken = 0
    for d in docs[:3000]:
        for number in near(d["number"]):
            for doc_type in {d["type"], rng.choice(types)}:
                for country in rng.sample(countries, 3):
                    doc = _Doc(doc_type, number, country)
                    for person_only in (False, True):
                        try:
                            reference = bulkprep._person_doc(doc, "d", person_only, key_of, None)
                        except _Fallback:
                            reference = None
                        try:
                            fast = bulkprep._person_doc(doc, "d", person_only, key_of, key_of.of)
                        except _Fallback:
                            fast = None
                        assert fast == reference, (doc_type, country, person_only)
                        taken += fast is not None and bulkprep._canonical_other(doc, person_only) is not None
    assert taken > 1000
    for body in ("91310115MA1FL8X25", "12100000400000398", "9144030071526726X"):
        assert bulkprep._uscc_check(body) == uscc.calc_check_digit(body)
