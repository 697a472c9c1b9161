"""Helpers to run the real `sanction` command in subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sanction(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sanction_service", *args],
        cwd=ROOT,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(extra: dict | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


class ServerProcess:
    """`sanction serve` on an ephemeral loopback port; its stderr is collected in `lines`.

    The drain delay on SIGTERM is cut to 0.1 s (the default 5 s would add up over the
    suite); pass SANCTION_DRAIN_SECONDS in `env` to test it. `cwd` and `command` let the
    benchmarks run another tree's server, or another server that logs the same lines."""

    def __init__(self, *args: str, env: dict | None = None, cwd: Path = ROOT, command: list[str] | None = None):
        self.proc = subprocess.Popen(
            command
            or [sys.executable, "-m", "sanction_service", "serve", "--listen", "127.0.0.1:0", "--metrics-port", "0", *args],
            cwd=cwd,
            env=_env({"SANCTION_DRAIN_SECONDS": "0.1", **(env or {})}),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.port: int | None = None
        self._serving = threading.Event()
        self.serving_count = 0
        self.expected_serving = 1
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.search(r"(?:listening|workers) on [\d.]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
            if "SERVING at data version" in line:
                self.serving_count += 1
                if self.serving_count >= self.expected_serving:
                    self._serving.set()

    def wait_serving(self, timeout: float = 60, workers: int = 1) -> str:
        self.expected_serving = workers
        if self.serving_count >= workers:
            self._serving.set()
        deadline = time.monotonic() + timeout
        while not self._serving.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("server did not start:\n" + "".join(self.lines))
        return f"127.0.0.1:{self.port}"

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once the process has ended and all its stderr is in `lines`."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
