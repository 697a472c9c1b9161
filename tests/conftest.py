"""Shared fixtures: real LMDB stores in temp dirs, real gRPC servers on ephemeral ports."""

from __future__ import annotations

import itertools
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from stdnum.cn import ric, uscc

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from sanction_service.checker import Checker, today_in_shanghai  # noqa: E402
from sanction_service.grpc_api.server import build_service  # noqa: E402
from sanction_service.identity import pepper_fingerprint  # noqa: E402
from sanction_service.ledger import FeedLine, Ledger  # noqa: E402
from sanction_service.settings import Settings  # noqa: E402
from sanction_service.store import Store  # noqa: E402

PEPPER = b"test-pepper-0123456789abcdef0123"
_counter = itertools.count(1)


def make_ric(region: str = "110105", birth: str = "19800101", seq: int = 123) -> str:
    body = f"{region}{birth}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum ignores the last character


def make_uscc(body16: str = "9111000060003734") -> str:
    body = body16 + "1" if len(body16) == 16 else body16
    return body + uscc.calc_check_digit(body)


def day(offset: int = 0) -> date:
    """Today in Asia/Shanghai plus `offset` days: checks may only ask about travel dates
    from yesterday to a year ahead, so tests that check dates place their feeds around today."""
    return today_in_shanghai() + timedelta(days=offset)


def iso(offset: int = 0) -> str:
    return day(offset).isoformat()


def doc(number: str, type_: str = "RESIDENT_ID", country: str | None = None) -> dict:
    d = {"type": type_, "number": number}
    if country:
        d["country"] = country
    return d


def event(type_: str, listing_id: str, **fields) -> dict:
    n = next(_counter)
    base = {
        "event_id": fields.pop("event_id", f"ev-{n}"),
        "type": type_,
        "occurred_at": fields.pop("occurred_at", "2024-05-01T10:00:00+08:00"),
        "listing_id": listing_id,
    }
    base.update(fields)
    return base


def list_person(
    listing_id: str,
    number: str,
    *,
    name: str = "张伟",
    list_type: str = "DISHONEST",
    listed_on: str = "2024-01-01",
    expires_on: str | None = None,
    extra=(),
    **fields,
) -> dict:
    return event(
        "LIST",
        listing_id,
        list_type=list_type,
        case_number=fields.pop("case_number", "(2024)京0105执1号"),
        court=fields.pop("court", "北京市朝阳区人民法院"),
        listed_on=listed_on,
        expires_on=expires_on,
        subject={"kind": "PERSON", "name": name, "document": doc(number)},
        extra_documents=list(extra),
        restricted_persons=[],
        **fields,
    )


def list_org(
    listing_id: str,
    uscc_number: str,
    persons: list[tuple[str, str, str]],
    *,
    name: str = "上海示例贸易有限公司",
    listed_on: str = "2024-01-01",
    expires_on: str | None = None,
    **fields,
):
    return event(
        "LIST",
        listing_id,
        list_type=fields.pop("list_type", "CONSUMPTION_RESTRICTION"),
        case_number=fields.pop("case_number", "(2024)沪0115执567号"),
        court="上海市浦东新区人民法院",
        listed_on=listed_on,
        expires_on=expires_on,
        subject={"kind": "ORGANIZATION", "name": name, "document": doc(uscc_number, "USCC")},
        restricted_persons=[{"role": role, "name": pname, "document": doc(number)} for role, pname, number in persons],
        **fields,
    )


def feed_lines(events: list) -> list[FeedLine]:
    return [FeedLine(i, e) for i, e in enumerate(events, 1)]


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store", pepper_fingerprint(PEPPER), create=True, map_size=64 << 20)
    yield s
    s.close()


@pytest.fixture
def ledger(store) -> Ledger:
    return Ledger(store, PEPPER)


@pytest.fixture
def checker(store, tmp_path) -> Checker:
    """A checker over the `store` fixture, its prefilter built and ready."""
    c = Checker(store, PEPPER, prefilter_path=tmp_path / "prefilter.bloom", error_rate=0.001)
    c.warm_up()
    return c


def apply(ledger: Ledger, *events) -> list:
    return list(ledger.apply(feed_lines(list(events))))


@pytest.fixture
def service(tmp_path, store):
    """A real gRPC server on an ephemeral loopback port, not yet warmed up."""
    settings = Settings(data_dir=str(store.path), listen="127.0.0.1:0", metrics_port=0)
    svc = build_service(settings, store=store, pepper=PEPPER)
    svc.start()
    yield svc
    svc.stop_server()


@pytest.fixture
def client(service):
    from sanction_service.clients.sanction_client import RestrictionClient

    service.warm_up()
    with RestrictionClient(f"127.0.0.1:{service.port}", timeout=5) as c:
        yield c
