"""Build hook: the build generates the gRPC/protobuf stubs itself, so `pip install .`,
`pip install git+…`, a wheel or an sdist need no `make`.

Everything else about the distribution is in pyproject.toml. This file owns the two things
that depend on the stub generator: running it (proto/ -> gen/sanction, the package
`sanction.v1`), and the runtime dependencies, whose grpcio and protobuf floors are those
the generated code checks at import time (`GRPC_GENERATED_VERSION`, the protobuf gencode
version), so they must come from the generator this build used, not from a fixed number.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE / "proto"
# google/rpc/status.proto, vendored for buf (third_party/googleapis/README.md): the same
# file the API is linted against, so the build needs no googleapis download.
IMPORTS_DIR = HERE / "third_party" / "googleapis"
GEN_DIR = HERE / "gen"
STUB_PACKAGE = GEN_DIR / "sanction"

DEPENDENCIES = [
    "grpcio-health-checking>=1.60",
    "grpcio-reflection>=1.60",
    "grpcio-status>=1.60",
    "lmdb>=1.4",
    # Feed lines decoded and validated against typed structs in C (the reference parser
    # stays the fallback for anything else), and records encoded byte-identical to json.
    "msgspec>=0.18",
    # Batch-wide resident-ID checks and prefilter probes (one vectorised pass per batch).
    "numpy>=1.26",
    # The persisted prefilter records this version; another one forces a rebuild.
    "pybloom-live==4.0.0",
    "prometheus-client>=0.20",
    "python-stdnum>=1.20",
    "tqdm>=4.66",
    # Replication (sanction publish/follow/snapshot): the NATS JetStream client; the
    # nkeys extra reads .creds files (JWT + nkey seed). Imported only by
    # sanction_service.replication, so the embedded default never loads it.
    "nats-py[nkeys]>=2.7",
]


def generator_floors() -> list[str]:
    """grpcio and protobuf at least as new as the stubs this build generates need.

    grpcio-tools X emits `GRPC_GENERATED_VERSION = 'X'` (grpcio older than X refuses the
    stubs) and requires the protobuf runtime its own gencode needs, which is the floor of
    the generated *_pb2 modules too.
    """
    try:
        tools = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            "building sanction-service needs grpcio-tools ([build-system] requires in "
            "pyproject.toml); with --no-build-isolation, install it first"
        ) from None
    protobuf = next(
        (
            m.group(1)
            for r in importlib.metadata.requires("grpcio-tools") or []
            if (m := re.fullmatch(r"protobuf\s*\(?[^;]*?>=\s*([\w.]+).*", r))
        ),
        None,
    )
    return [f"grpcio>={tools}", f"protobuf>={protobuf}" if protobuf else "protobuf>=5.26"]


def stubs_are_fresh() -> bool:
    stubs = list(STUB_PACKAGE.glob("v1/*_pb2*.py"))
    protos = list(PROTO_DIR.glob("sanction/v1/*.proto"))
    return (
        bool(stubs)
        and bool(protos)
        and (STUB_PACKAGE / "v1" / "__init__.py").exists()
        and min(p.stat().st_mtime for p in stubs) >= max(p.stat().st_mtime for p in protos)
    )


def generate_stubs() -> None:
    """proto/sanction/v1/*.proto -> gen/sanction/v1/*_pb2.py, *_pb2_grpc.py, *_pb2.pyi."""
    from grpc_tools import protoc

    protos = sorted(str(p) for p in PROTO_DIR.glob("sanction/v1/*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_DIR}/sanction/v1: the sdist or clone is incomplete")
    GEN_DIR.mkdir(exist_ok=True)
    # protoc's own well-known types (google/protobuf/*.proto) ship inside grpc_tools.
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{IMPORTS_DIR}",
        f"-I{well_known}",
        f"--python_out={GEN_DIR}",
        f"--grpc_python_out={GEN_DIR}",
        f"--pyi_out={GEN_DIR}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(protos)}")
    for package in (STUB_PACKAGE, STUB_PACKAGE / "v1"):
        (package / "__init__.py").touch()
    (STUB_PACKAGE / "py.typed").touch()  # the .pyi stubs are for users' type checkers too


class EggInfoWithStubs(egg_info):
    """Metadata and the sdist's file list are made before anything is built: the stub
    package must exist by then (a clean clone has no gen/)."""

    def run(self) -> None:
        if not stubs_are_fresh():
            generate_stubs()
        super().run()


class BuildPyWithStubs(build_py):
    """A wheel's stubs always come from this build's generator (those of a developer's gen/
    may be from another grpcio-tools than the one the dependency floors name); an editable
    install keeps gen/ in place, regenerated when a .proto is newer."""

    def run(self) -> None:
        if self.editable_mode:
            if not stubs_are_fresh():
                generate_stubs()
        else:
            generate_stubs()
        super().run()


setup(
    install_requires=DEPENDENCIES + generator_floors(),
    cmdclass={"egg_info": EggInfoWithStubs, "build_py": BuildPyWithStubs},
)
