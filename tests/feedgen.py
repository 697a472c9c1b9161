"""Random feeds for the fast-vs-reference tests: a synthetic feed of every event type
(sanction_service.loaders.synth) with hostile lines mixed in: lines the parser rejects (mutations of real
events: wrong types, unknown fields, damaged JSON, bad documents, bad dates, ...), lines
the store rejects (duplicates, conflicts, reused listing ids, unknown and lifted listings,
EXTENDs to an earlier date, EXEMPTs for a stranger), and valid lines written differently
(key order, spacing, escapes, padded identifiers)."""

from __future__ import annotations

import json
import random

from sanction_service.loaders import synth

HOSTILE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(2**63) - 1,
    10**30,
    1.5,
    1e300,
    0.0,
    "",
    " ",
    "  x  ",
    "\t",
    "x" * 129,
    "案" * 43,
    "\u0000",
    "a\u0085b",
    "\u2028",
    "\ud800",
    "a\udfffb",
    "2025-02-30",
    "2025-02-28",
    "20250228",
    "2024-05-01T10:00:00",
    "2024-05-01T10:00:00+08:00",
    "2024-05-01 10:00:00+08:00",
    "2024-05-01t10:00:00z",
    "LIST",
    "PERSON",
    "ORGANIZATION",
    "USCC",
    "PASSPORT",
    "RESIDENT_ID",
    "CHN",
    "chn",
    "FRA",
    "SETTLED",
    "PRINCIPAL",
    "SUBJECT",
    "FLIGHT",
    [],
    [None],
    ["FLIGHT", "FLIGHT"],
    ["BUS"],
    {},
    {"type": "PASSPORT", "number": "E1234567"},
    {"type": "RESIDENT_ID", "number": "110105198001019918"},
    {"type": "RESIDENT_ID", "number": "11010519800101991x"},
    {"type": "RESIDENT_ID", "number": "110105800101991"},
    {"type": "RESIDENT_ID", "number": "1101 0519 8001 0199 18"},
    {"type": "USCC", "number": "91310115MA1FL8X25K"},
    {"type": "PASSPORT", "number": "E1234567", "country": None},
    {"type": "PASSPORT", "number": "E1234567", "country": " fra "},
    {"type": "PASSPORT", "number": "E1234567", "x": 1},
    [{"role": "PRINCIPAL", "name": "王", "document": {"type": "RESIDENT_ID", "number": "110105198001019918"}}],
    [{"type": "PASSPORT", "number": "E7654321"}],
    [[[]]],
]


def _paths(value, prefix=()):
    """Every path to a value inside an event (object keys and list indexes)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield prefix + (i,)
            yield from _paths(child, prefix + (i,))


def mutate(rng: random.Random, event: dict) -> str:
    """One line made from `event`: damaged in one of many ways, or the same content written otherwise."""
    event = json.loads(json.dumps(event))
    how = rng.randrange(10)
    paths = list(_paths(event))
    if how <= 3 and paths:  # replace one value, nested ones included
        *parents, last = rng.choice(paths)
        target = event
        for p in parents:
            target = target[p]
        target[last] = rng.choice(HOSTILE_VALUES)
    elif how == 4 and paths:  # drop one field
        *parents, last = rng.choice(paths)
        target = event
        for p in parents:
            target = target[p]
        if isinstance(target, dict):
            del target[last]
        else:
            target.pop(last)
    elif how == 5:  # an unknown field
        event[rng.choice(["note", "Type", "event_id ", "x"])] = rng.choice(HOSTILE_VALUES)
    elif how == 6:  # another type with this event's fields
        event["type"] = rng.choice(["LIST", "DELIST", "PERFORM", "EXTEND", "CORRECT", "EXEMPT", "list", None])
    elif how == 7:  # spacing, key order, escapes: the same content
        items = list(event.items())
        rng.shuffle(items)
        return json.dumps(
            dict(items),
            ensure_ascii=rng.random() < 0.5,
            indent=rng.choice([None, 1]),
            separators=rng.choice([(",", ":"), (", ", ": ")]),
        ).replace("\n", " ")
    elif how == 8:  # damage the text
        text = json.dumps(event, ensure_ascii=False)
        cut = rng.randrange(len(text))
        return rng.choice(
            [
                text[:cut],
                text[:cut] + text[cut + 1 :],
                text + " x",
                "[" + text + "]",
                text + "\r",
                text.replace('"', "'", 1),
                "\ufeff" + text,
                text.replace(":", ': NaN, "a":', 1),
            ]
        )
    else:  # padded identifiers and texts (stripped by the parser, kept in the digest)
        for name in ("event_id", "listing_id", "court", "case_number", "reference"):
            if name in event and isinstance(event[name], str) and rng.random() < 0.5:
                event[name] = rng.choice([" ", "\u3000", "\t"]) + event[name] + " "
    return json.dumps(event, ensure_ascii=rng.random() < 0.3)


def _state_error(rng: random.Random, seen: list[dict]) -> dict:
    """An event the parser takes and the store may refuse (or apply: a late follow-up)."""
    old = rng.choice(seen)
    e = json.loads(json.dumps(old))
    how = rng.randrange(7)
    if how == 0:
        return e  # a duplicate
    if how == 1:
        e["occurred_at"] = "2030-01-01T00:00:00+08:00"  # a conflict: same id, other content
        return e
    if how == 2 and e["type"] == "LIST":
        e["event_id"] += ":again"  # the listing id is used already
        return e
    lid = e["listing_id"] if rng.random() < 0.8 else "NO-SUCH-LISTING"
    n = rng.randrange(10**9)
    follow = rng.choice(
        [
            {"type": "DELIST", "reason": rng.choice(["SETTLED", "EXPIRED", "REVOKED"]), "effective_on": "2026-01-01"},
            {"type": "PERFORM", "performed_on": "2026-01-02"},
            {"type": "EXTEND", "expires_on": rng.choice(["2020-01-01", "2040-01-01"])},
            {"type": "CORRECT", "court": "更正后的人民法院"},
            {
                "type": "CORRECT",
                "subject": {
                    "kind": "PERSON",
                    "name": "新",
                    "document": {"type": "RESIDENT_ID", "number": "110105198001019918"},
                },
            },
            {
                "type": "EXEMPT",
                "document": {"type": "RESIDENT_ID", "number": "110105198001019918"},
                "modes": ["RAIL"],
                "valid_from": "2026-01-01",
                "valid_to": "2026-02-01",
                "reference": f"R{n}",
            },
        ]
    )
    return {"event_id": f"x-{n}", "occurred_at": "2026-01-01T00:00:00+08:00", "listing_id": lid, **follow}


def hostile_feed(seed: int, listings: int, *, hostile_share: float = 0.15) -> list[str]:
    """Feed lines (text, no line feed): synthetic events with hostile lines mixed in."""
    rng = random.Random(seed)
    lines: list[str] = []
    seen: list[dict] = []
    for e in synth.generate_events(seed, listings):
        lines.append(json.dumps(e, ensure_ascii=False, separators=(",", ":")))
        seen.append(e)
        while rng.random() < hostile_share:
            if rng.random() < 0.5:
                lines.append(mutate(rng, rng.choice(seen[-200:])))
            else:
                lines.append(json.dumps(_state_error(rng, seen), ensure_ascii=False))
        if rng.random() < 0.005:
            lines.append(rng.choice(["", "   ", "\t"]))
    return lines
