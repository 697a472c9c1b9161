"""The protos as a public API (buf.yaml): `buf lint` passes with the STANDARD rules (each
exception justified in buf.yaml), and `buf breaking` (FILE rules) finds nothing against
the previous commit, and does find a breaking change when there is one. Skipped, with the
reason, only when buf is not installed (`make test` installs it from npm when it can) or
there is no previous commit to compare with (a shallow clone, the first commit)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from processes import ROOT

API_PATHS = ("proto", "third_party", "buf.yaml")


def find_buf() -> str | None:
    """$BUF, the copy `make test` installs with npm (pinned), or a buf on PATH."""
    for candidate in (os.environ.get("BUF"), ROOT / ".tools" / "node_modules" / ".bin" / "buf", shutil.which("buf")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def buf() -> str:
    found = find_buf()
    if found is None:
        pytest.skip(
            "buf is not installed: `make test` installs it with `npm install @bufbuild/buf`, "
            "which could not reach the npm registry here (or set BUF=/path/to/buf)"
        )
    return found


def run_buf(buf: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [buf, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BUF_CACHE_DIR": str(ROOT / ".tools" / "buf-cache")},
    )


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=60)


def test_buf_lint_passes_with_the_standard_rules(buf):
    result = run_buf(buf, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lint_exception_is_scoped_and_justified():
    text = (ROOT / "buf.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert re.search(r"^  use:\n    - STANDARD$", text, re.MULTILINE), "lint must use the STANDARD rules"
    assert not re.search(r"^  except:", text, re.MULTILINE), "waive a rule per path (ignore_only), with its reason"
    start = lines.index("  ignore_only:")
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith("    "):
            break
        rule = re.fullmatch(r"    ([A-Z_]+):", lines[i])
        if rule:
            before = lines[i - 1].strip()
            justified = before.startswith("#") or re.fullmatch(r"[A-Z_]+:", lines[i - 2].strip() if i > 1 else "")
            assert justified, f"buf.yaml: {rule.group(1)} is waived without a comment saying why"
            assert lines[i + 1].strip() == "- proto/sanction/v1", f"{rule.group(1)}: waived beyond sanction.v1"


def previous_commit_api(tmp_path: Path) -> Path:
    """The previous commit's protos, as a buf workspace in tmp_path."""
    if shutil.which("git") is None or git("rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.skip("not a git checkout: no previous commit to compare with")
    if git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}").returncode != 0:
        shallow = git("rev-parse", "--is-shallow-repository").stdout.strip() == b"true"
        pytest.skip(
            "no previous commit to compare with: "
            + ("a shallow clone (fetch with --depth 2 or more)" if shallow else "this is the first commit")
        )
    archive = git("archive", "--format=tar", "HEAD~1")
    assert archive.returncode == 0, archive.stderr
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[0] in API_PATHS]
        tar.extractall(tmp_path, members=members, filter="data")
    # A commit from before buf.yaml (or the vendored google/rpc protos) is compared under
    # this commit's workspace layout: its protos are the same files at the same paths.
    for name in ("buf.yaml", "third_party"):
        if not (tmp_path / name).exists():
            copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
            copy(ROOT / name, tmp_path / name)
    assert (tmp_path / "proto" / "sanction" / "v1").is_dir()
    return tmp_path


def test_buf_breaking_finds_nothing_against_the_previous_commit(buf, tmp_path):
    previous = previous_commit_api(tmp_path)
    result = run_buf(buf, "breaking", "--against", str(previous))
    assert result.returncode == 0, "a breaking change of the API against the previous commit:\n" + result.stdout + result.stderr


def test_buf_breaking_does_catch_a_breaking_change(buf, tmp_path):
    changed = tmp_path / "changed"
    for name in API_PATHS:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, changed / name)
    restriction = changed / "proto" / "sanction" / "v1" / "restriction.proto"
    text = restriction.read_text(encoding="utf-8")
    assert "  string masked_document = 4;\n" in text
    restriction.write_text(text.replace("  string masked_document = 4;\n", "  reserved 4;\n"), encoding="utf-8")
    result = run_buf(buf, "breaking", "--against", str(ROOT), cwd=changed)
    assert result.returncode != 0 and "masked_document" in result.stdout, result.stdout + result.stderr
