"""`pip install .` from a clean clone, as a user does it: no make, no gen/, a fresh venv.

The repository the suite runs in is cloned at HEAD (uncommitted changes are not part of
it), installed with pip into a new venv (pip fetches the build and runtime dependencies
from the package index; without one the test skips, saying so), and the installed
`sanction` answers `--version` and a real `check` against a server it serves itself from
a small store. Nothing here imports the checkout: the venv's own code must do it all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from conftest import list_person, make_ric

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict:
    """The environment without anything that points Python at the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("SANCTION_")
    }
    env.update(extra)
    return env


def run(*command, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_pip_install_from_a_clean_clone_serves_and_checks(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    clone, venv, work = tmp_path / "clone", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    env = clean_env()
    cloned = run("git", "clone", "--quiet", ROOT, clone, cwd=tmp_path, env=env)
    assert cloned.returncode == 0, cloned.stderr
    assert not (clone / "gen").exists()
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env).returncode == 0
    python, sanction = venv / "bin" / "python", venv / "bin" / "sanction"

    # Is the package index reachable? pip's own question, with pip's own configuration.
    probe = run(
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        tmp_path / "probe",
        "grpcio-tools",
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    if probe.returncode != 0:
        pytest.skip("the package index cannot be reached, so pip cannot fetch the dependencies:\n" + probe.stderr[-500:])

    started = time.monotonic()
    installed = run(python, "-m", "pip", "install", "--quiet", ".", cwd=clone, env=env, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    print(f"pip install . took {time.monotonic() - started:.0f} s")

    # The installed code is the venv's, not the clone's or the checkout's.
    where = run(
        python,
        "-c",
        "import sanction_service, sanction.v1.restriction_pb2 as p, "
        "sanction_service.clients.sanction_client as c, sanction_service.loaders.feed as f; "
        "print(sanction_service.__file__, p.__file__, c.__file__, f.__file__)",
        cwd=work,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    site = str(venv / "lib")
    assert all(path.startswith(site) for path in where.stdout.split()), where.stdout

    # The wheel installs no top-level `clients` or `loaders`: its RECORD lists every file.
    files = run(
        python,
        "-c",
        "import importlib.metadata as m; print('\\n'.join(str(f) for f in m.files('sanction-service')))",
        cwd=work,
        env=env,
    )
    paths = files.stdout.split()
    tops = {p.split("/")[0] for p in paths if p.endswith(".py") and "/" in p}
    assert tops == {"sanction_service", "sanction"}, sorted(tops)
    assert {
        "sanction_service/clients/sanction_client.py",
        "sanction_service/loaders/feed.py",
        "sanction/v1/restriction_pb2.py",
        "sanction/v1/restriction_pb2.pyi",
    } <= set(paths)
    for name in ("clients", "loaders"):
        assert run(python, "-c", f"import {name}", cwd=work, env=env).returncode != 0, f"`import {name}` works"

    version = tomllib.loads((clone / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    shown = run(sanction, "--version", cwd=work, env=env)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"sanction {version}"), shown

    # A small store, served by the installed `sanction serve`, asked by its `sanction check`.
    data, listed, unlisted = work / "data", make_ric(seq=417), make_ric(seq=418)
    env = clean_env(SANCTION_DATA_DIR=str(data), SANCTION_DRAIN_SECONDS="0.1")
    assert run(sanction, "init", cwd=work, env=env).returncode == 0
    feed = work / "feed.jsonl"
    feed.write_text(json.dumps(list_person("INSTALL-1", listed), ensure_ascii=False) + "\n", encoding="utf-8")
    loaded = run(sanction, "load", feed, cwd=work, env=env)
    assert loaded.returncode == 0, loaded.stderr
    server = subprocess.Popen(
        [str(sanction), "serve", "--listen", "127.0.0.1:0", "--metrics-port", "0"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address, lines = "", []
        for line in server.stderr:  # ends when the server does
            lines.append(line)
            if found := re.search(r"listening on ([\d.]+:\d+)", line):
                address = found.group(1)
            if "SERVING at data version" in line:
                break
        assert address and server.poll() is None, "".join(lines)
        threading.Thread(target=server.stderr.read, daemon=True).start()  # a full pipe would stall it
        denied = run(
            sanction, "check", "--target", address, "--number", listed, "--mode", "FLIGHT", "--json", cwd=work, env=env
        )
        assert denied.returncode == 0, denied.stderr
        answer = json.loads(denied.stdout)
        assert answer["decision"] == "DENY" and answer["matches"][0]["listing_id"] == "INSTALL-1", answer
        allowed = run(
            sanction, "check", "--target", address, "--number", unlisted, "--mode", "FLIGHT", "--exit-code", cwd=work, env=env
        )
        assert allowed.returncode == 0 and allowed.stdout.startswith("ALLOW"), allowed
    finally:
        server.terminate()
        server.wait(30)
