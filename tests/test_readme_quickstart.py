"""The README's quick start, run as written: `make run` (the embedded demo, on a SQLite file of its
own and a free port instead of 8000), the `export TOKEN=…` line it prints, the curl example and
every row of the table of outcomes under it, then the Python example of "Gate your agent in five
minutes". Nothing here restates the README's claims: they are read from it."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ROOT, free_port

README = (ROOT / "README.md").read_text()
DEMO_ADDRESS = "127.0.0.1:8000"

pytestmark = pytest.mark.server


def _block_after(heading: str, language: str) -> str:
    """The first fenced ``language`` block after ``heading``."""
    start = README.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(README, start)
    assert match is not None, f"no {language} block after {heading!r}"
    return match.group(1)


def _outcome_table() -> list[tuple[str, str]]:
    """(change to the request, status) for each row of the quick start's table."""
    start = README.index("| Change to the request |")
    rows = []
    for line in README[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        change, status = (cell.strip() for cell in line.strip("|").split("|")[:2])
        rows.append((change, status.strip("`")))
    return rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`make run` as the README says, on a free port; (address, the `export TOKEN=…` line)."""
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = tmp / "make-run.log"
    env = {**os.environ, "GATE_SQLITE_PATH": str(tmp / "gate.sqlite3"), "GATE_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "run", "HOST=127.0.0.1", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # runserver's reloader is a child: stop the whole group
        )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"make run exited:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"make run did not serve:\n{log.read_text()[-4000:]}"
            try:
                httpx.get(f"http://{address}/api/schema", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        exports = [line for line in log.read_text().splitlines() if line.startswith("export TOKEN=")]
        assert len(exports) == 1, log.read_text()[-4000:]
        yield address, exports[0]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _shell(script: str) -> str:
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _changed(curl: str, change: str, key: str) -> str:
    """The curl example with its body changed as a row of the table says, and its own key."""
    prefix, body_text = curl.split(" -d '", 1)
    body = json.loads(body_text.rstrip().rstrip("'"))
    body["idempotency_key"] = key
    amount = re.fullmatch(r'`"amount": (.+)`', change)
    if amount:
        body["params"]["amount"] = json.loads(amount.group(1))
    elif re.fullmatch(r"without the `(\w+)` step", change):
        tool = re.fullmatch(r"without the `(\w+)` step", change).group(1)  # type: ignore[union-attr]
        body["trajectory"] = [step for step in body["trajectory"] if step.get("tool") != tool]
    else:
        assert change == "none", f"the test cannot apply {change!r}: teach it, or word the row as the others"
    return f"{prefix} -d {shlex.quote(json.dumps(body))}"


def test_the_curl_example_and_its_table_of_outcomes(demo: tuple[str, str]) -> None:
    address, export = demo
    curl = _block_after("propose a first action", "sh").replace(DEMO_ADDRESS, address)
    rows = _outcome_table()
    assert rows[0][0] == "none"
    assert len(rows) >= 5

    as_written = json.loads(_shell(f"{export}\n{curl}"))
    assert as_written["status"] == rows[0][1], as_written

    for index, (change, status) in enumerate(rows[1:], start=1):
        answer = json.loads(_shell(f"{export}\n{_changed(curl, change, f'readme-row-{index}')}"))
        assert answer["status"] == status, (change, answer)


def test_the_python_example_prints_what_the_readme_says(demo: tuple[str, str]) -> None:
    address, export = demo
    example = _block_after("## Gate your agent in five minutes", "python").replace(DEMO_ADDRESS, address)
    printed = re.search(r"It prints `(.+?)`", README[README.index("## Gate your agent in five minutes") :])
    assert printed is not None
    token = export.removeprefix("export TOKEN=")
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TOKEN": token},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed.group(1)

    refused = subprocess.run(
        [sys.executable, "-c", example.replace("amount=20)", "amount=150)")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TOKEN": token},
        check=False,
    )
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.startswith("refused:"), refused.stdout


def test_make_run_serves_the_address_the_readme_names() -> None:
    makefile = (ROOT / "Makefile").read_text()
    host, port = DEMO_ADDRESS.split(":")
    assert f"HOST ?= {host}" in makefile
    assert f"PORT ?= {port}" in makefile
    assert f"http://{DEMO_ADDRESS}" in README
