"""Every command README.md shows, run for real: `make run` serves a demo list on an
ephemeral port from a temporary data directory (the SANCTION_* variables it must honour),
then each command of README's `sh` blocks and each `sanction …` in its text runs against
it. None may end with a traceback or an exit code README does not document for it; the
showcase answers are the ones README prints; and the demo list is a list as of today
(`sanction stats` shows no event later than now)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from processes import ROOT, _env
from test_docs import fenced_blocks, readme_exit_codes

from sanction_service import cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV_BIN = ROOT / ".venv" / "bin"
# The suite itself, and the targets that build or measure rather than run (make proto, lint,
# demo and bench are shown in prose only).
NOT_RUN = {
    "make test": "the test suite itself",
    "npm ci --prefix clients/node": "installs the Node example's packages, as make test does",
}
# The example callers' codes (README "Check a passenger"): 0 all sold, 1 some refused, 69 no answer, 64, 78.
EXAMPLE_CODES = {0, 1, cli.EXIT_UNAVAILABLE, cli.EXIT_USAGE, cli.EXIT_CONFIG}
# clients/node/check.js exits as `sanction check` does (README "Other languages").
NODE_CODES = {
    0,
    cli.EXIT_DENY,
    cli.EXIT_USAGE,
    cli.EXIT_INVALID,
    cli.EXIT_UNAVAILABLE,
    cli.EXIT_SERVICE_ERROR,
    cli.EXIT_NO_PERMISSION,
}
NODE_READY = shutil.which("node") is not None and (ROOT / "clients/node/node_modules/@grpc/grpc-js").is_dir()
SHOWCASE = "110105198001019918"


def sh_commands() -> list[str]:
    """The commands of README's sh blocks: continuation lines joined, comments dropped."""
    commands = []
    for _, language, body, _ in fenced_blocks(README):
        if language != "sh":
            continue
        text = "\n".join(body).replace("\\\n", " ")
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def inline_commands() -> list[str]:
    """`sanction …` spans in README's text, placeholders given values."""
    spans = re.findall(r"`(sanction [a-z][^`]*)`", re.sub(r"```.*?```", "", README, flags=re.DOTALL))
    return [re.sub(r"\bN\b", "50", span) for span in dict.fromkeys(spans)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def documented(command: str) -> tuple[str, set[int]]:
    """Which program a command line runs, and the exit codes README documents for it."""
    words = shlex.split(command)
    if words[0] == "node":
        return words[1], NODE_CODES
    if "sanction_service.clients.examples." in command:
        return words[2], EXAMPLE_CODES
    name = next((w for w in words[1:] if not w.startswith("-")), None)
    if name is None:  # `sanction --version`: no command, it prints and exits 0
        return "sanction", {0}
    return f"sanction {name}", readme_exit_codes()[name]


class MakeRun:
    """`make run` in its own process group, its stderr collected."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.address = ""
        self.serving = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"listening on ([\d.]+:\d+)", line)
            if found:
                self.address = found.group(1)
            if "SERVING at data version" in line:
                self.serving.set()

    def wait_serving(self, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while not self.serving.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("make run did not serve:\n" + "".join(self.lines))
        return self.address

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not (VENV_BIN / "sanction").exists() or shutil.which("make") is None:
        pytest.skip("needs make and the .venv that `make test` builds")
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip(".venv is not up to date: `make run` would rebuild it under the running suite")
    tmp = tmp_path_factory.mktemp("readme")
    metrics_port = free_port()
    env = _env(
        {
            "SANCTION_DATA_DIR": str(tmp / "demo"),
            "SANCTION_LISTEN": "127.0.0.1:0",
            "SANCTION_METRICS_PORT": str(metrics_port),
            "DEMO_LISTINGS": "300",
        }
    )
    for name in ("SANCTION_PEPPER", "SANCTION_PEPPER_FILE", "SANCTION_TOKEN", "SANCTION_TOKENS_FILE"):
        env.pop(name, None)
    server = MakeRun(env)
    try:
        address = server.wait_serving()
        yield {
            "tmp": tmp,
            "address": address,
            "metrics_port": metrics_port,
            "server": server,
            "env": {**env, "SANCTION_LISTEN": address},
        }
    finally:
        server.stop()


def run(demo, command: str) -> subprocess.CompletedProcess:
    command = command.replace(".venv/bin/", f"{VENV_BIN}/").replace(" clients/node/", f" {ROOT}/clients/node/")
    if command.startswith("sanction "):
        command = f"{VENV_BIN}/{command}"
    return subprocess.run(
        ["bash", "-c", command], cwd=demo["tmp"], env=demo["env"], capture_output=True, text=True, timeout=180
    )


def test_make_run_honours_the_sanction_variables(demo):
    assert demo["address"].startswith("127.0.0.1:") and not demo["address"].endswith(":50051")
    assert (demo["tmp"] / "demo" / "data.mdb").exists()
    with urllib.request.urlopen(f"http://127.0.0.1:{demo['metrics_port']}/metrics", timeout=10) as answer:
        assert b"sanction_journal_sequence" in answer.read()


def test_every_command_of_the_readme_runs_with_a_documented_exit_code(demo):
    shutil.copy(demo["tmp"] / "demo" / "demo-feed.jsonl", demo["tmp"] / "feed.jsonl")  # the README's feed.jsonl
    commands = [c for c in sh_commands() if c != "make run" and c not in NOT_RUN] + inline_commands()
    assert len(commands) >= 15, commands
    assert {c for c in sh_commands() if c.startswith(("make ", "npm "))} == {"make run", *NOT_RUN}
    if not NODE_READY:  # Node.js or the example's packages are missing (tests/test_node_client.py says which)
        commands = [c for c in commands if not c.startswith("node ")]
    failures = []
    for command in commands:
        result = run(demo, command)
        program, codes = documented(command)
        if "Traceback" in result.stderr or result.returncode not in codes:
            failures.append(
                f"{command}\n  exit {result.returncode} (documented for {program}: {sorted(codes)})\n" + result.stderr[-2000:]
            )
        elif result.returncode == cli.EXIT_UNAVAILABLE:  # the server is up: SANCTION_LISTEN was not honoured
            failures.append(f"{command}\n  no answer from the server at SANCTION_LISTEN\n" + result.stderr[-2000:])
    assert not failures, "\n".join(failures)


def test_the_showcase_answers_are_the_ones_the_readme_prints(demo):
    blocks = fenced_blocks(README)
    shown = next(body for _, language, body, before in blocks if language == "" and body[0].startswith("DENY"))
    result = run(demo, f".venv/bin/sanction check --number {SHOWCASE} --mode FLIGHT")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(shown)
    for got, expected in zip(lines, shown):
        assert re.fullmatch(".*".join(map(re.escape, expected.split("…"))), got), (got, expected)
    second = run(demo, f".venv/bin/sanction check --number {SHOWCASE} --mode RAIL --train D301 --rail-class second")
    assert second.stdout.startswith("ALLOW") and "restricted=True" in second.stdout
    assert "D301" in README and "--rail-class second" in README


def test_the_demo_list_is_a_list_as_of_today(demo):
    stats = json.loads(run(demo, ".venv/bin/sanction stats --json").stdout)
    last = datetime.fromisoformat(stats["last_event_time"])
    now = datetime.now(UTC)
    assert last <= now, f"the demo's last event {last} lies in the future"
    assert last >= now - timedelta(days=45), f"the demo's last event {last} is not recent"
    assert stats["active_listings"] > 100
