"""TLS (with optional client certificates) and bearer tokens with roles, on real servers
with certificates generated here."""

import datetime
import ipaddress
import json

import grpc
import pytest
from conftest import PEPPER, apply, list_person, make_ric
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip, tls_credentials

from sanction_service.grpc_api.auth import TokenFileError, load_tokens
from sanction_service.grpc_api.server import build_service
from sanction_service.settings import Settings

PERSON = make_ric("110105", "19800101", 123)
CHECK_TOKEN = "check-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def _cert(subject: str, issuer_key, issuer_name, *, ca: bool, san_ip: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _write(path, key, cert):
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture
def pki(tmp_path):
    ca_key, ca_cert = _cert("test CA", None, None, ca=True)
    server_key, server_cert = _cert("127.0.0.1", ca_key, ca_cert.subject, ca=False, san_ip=True)
    client_key, client_cert = _cert("rail-12306", ca_key, ca_cert.subject, ca=False)
    ca, _ = _write(tmp_path / "ca", ca_key, ca_cert)
    server = _write(tmp_path / "server", server_key, server_cert)
    client = _write(tmp_path / "client", client_key, client_cert)
    return {"ca": ca, "server": server, "client": client}


def start(store, ledger, **settings_kwargs):
    apply(ledger, list_person("L1", PERSON))
    settings = Settings(data_dir=str(store.path), listen="127.0.0.1:0", metrics_port=0, **settings_kwargs)
    service = build_service(settings, store=store, pepper=PEPPER)
    service.start()
    service.warm_up()
    return service


def deny_check(client):
    return client.check(Passenger("RESIDENT_ID", PERSON), Trip("FLIGHT")).decision


def test_tls_server_answers_a_tls_client_and_not_a_plaintext_one(store, ledger, pki):
    cert, key = pki["server"]
    service = start(store, ledger, tls_cert=cert, tls_key=key)
    try:
        with RestrictionClient(f"127.0.0.1:{service.port}", credentials=tls_credentials(pki["ca"]), timeout=5) as c:
            assert deny_check(c) == "DENY"
        with RestrictionClient(f"127.0.0.1:{service.port}", timeout=2) as plain:
            with pytest.raises(ServiceError) as exc:
                deny_check(plain)
            assert exc.value.code == "UNAVAILABLE"
    finally:
        service.stop_server()


def test_mutual_tls_requires_a_client_certificate(store, ledger, pki):
    cert, key = pki["server"]
    service = start(store, ledger, tls_cert=cert, tls_key=key, tls_client_ca=pki["ca"])
    target = f"127.0.0.1:{service.port}"
    try:
        with RestrictionClient(target, credentials=tls_credentials(pki["ca"]), timeout=2) as anonymous:
            with pytest.raises(ServiceError):
                deny_check(anonymous)
        client_cert, client_key = pki["client"]
        with RestrictionClient(target, credentials=tls_credentials(pki["ca"], client_cert, client_key), timeout=5) as c:
            assert deny_check(c) == "DENY"
    finally:
        service.stop_server()


@pytest.fixture
def token_service(store, ledger, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "clients": [
                    {"name": "rail", "token": CHECK_TOKEN, "roles": ["check"]},
                    {"name": "ops", "token": ADMIN_TOKEN, "roles": ["check", "admin"]},
                ]
            }
        )
    )
    service = start(store, ledger, tokens_file=str(tokens))
    yield f"127.0.0.1:{service.port}"
    service.stop_server()


def test_missing_or_unknown_token_is_unauthenticated(token_service):
    for token in ("", "wrong-token-0123456789abcdef"):
        with RestrictionClient(token_service, token=token) as client, pytest.raises(ServiceError) as exc:
            deny_check(client)
        assert exc.value.code == "UNAUTHENTICATED"


def test_check_role_may_check_but_not_administer(token_service):
    with RestrictionClient(token_service, token=CHECK_TOKEN) as client:
        assert deny_check(client) == "DENY"
        with pytest.raises(ServiceError) as exc:
            client.stats()
        assert exc.value.code == "PERMISSION_DENIED"
        with pytest.raises(ServiceError) as exc:
            client.apply_events([list_person("L2", make_ric("310115", "19700101", 5))])
        assert exc.value.code == "PERMISSION_DENIED"


def test_admin_role_may_administer_and_health_needs_no_token(token_service):
    with RestrictionClient(token_service, token=ADMIN_TOKEN) as client:
        assert client.stats().active_listings == 1
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(token_service))
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


def test_stream_without_token_is_unauthenticated(token_service):
    from sanction_service.clients.sanction_client import check_request

    with RestrictionClient(token_service) as client, pytest.raises(ServiceError) as exc:
        list(client.check_stream(iter([("a", check_request(Passenger("RESIDENT_ID", PERSON)))]), timeout=5))
    assert exc.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"clients": [{"name": "x", "token": "short", "roles": ["check"]}]}',
        '{"clients": [{"name": "x", "token": "long-enough-token-123", "roles": ["root"]}]}',
    ],
)
def test_bad_tokens_files_are_refused(tmp_path, content):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokenFileError):
        load_tokens(path)


def test_with_mutual_tls_the_certificate_subject_names_the_client_in_counters_and_audit(store, ledger, pki):
    from prometheus_client import REGISTRY

    cert, key = pki["server"]
    service = start(store, ledger, tls_cert=cert, tls_key=key, tls_client_ca=pki["ca"])
    client_cert, client_key = pki["client"]

    def denials() -> float:
        return REGISTRY.get_sample_value("sanction_client_checks_total", {"client": "CN=rail-12306", "decision": "DENY"}) or 0.0

    before = denials()
    try:
        with RestrictionClient(
            f"127.0.0.1:{service.port}", timeout=5, credentials=tls_credentials(pki["ca"], client_cert, client_key)
        ) as client:
            assert deny_check(client) == "DENY"
            assert deny_check(client) == "DENY"
            client.lookup_person(Passenger("RESIDENT_ID", PERSON))
    finally:
        service.stop_server()
    assert denials() - before == 2
    entries = [json.loads(line) for line in (store.path / "audit.log").read_text().splitlines()]
    assert [(e["client"], e["method"], e["outcome"]) for e in entries] == [("CN=rail-12306", "LookupPerson", "OK")]
