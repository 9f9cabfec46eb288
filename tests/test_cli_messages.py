"""What the command line says when something is wrong: a named cause, no table header before an
error, no report of zeros (issue 15's rough edges)."""

from __future__ import annotations

import socket
import subprocess
import sys

from .conftest import MODEL

TICKSERVE = [sys.executable, "-m", "tickserve.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TICKSERVE, *args], capture_output=True, text=True, timeout=120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_a_missing_tick_file_is_named_as_missing(tmp_path):
    result = run("stream", "--file", str(tmp_path / "nope.parquet"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"tickserve: error: tick file {tmp_path / 'nope.parquet'}: no such file"


def test_a_server_that_is_down_prints_the_error_and_no_table_header():
    result = run("stream", "--server", f"127.0.0.1:{_closed_port()}", "--samples", "100")
    assert result.returncode == 1 and "UNAVAILABLE" in result.stderr
    assert result.stdout == ""


def test_evaluate_on_too_few_ticks_to_label_says_so_instead_of_a_report_of_zeros(server):
    result = run("evaluate", "--server", server.address, "--model", MODEL, "--samples", "2000", "--limit", "10")
    assert result.returncode == 1
    assert "none of the 10 ticks scored could be labeled" in result.stderr and "horizon" in result.stderr
    assert "accuracy" not in result.stdout


def test_models_name_shows_one_model(server):
    result = run("models", MODEL, "--version", "1", "--server", server.address)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{MODEL}/1: READY"
    assert any(line.split()[:2] == ["labels", "taker,"] or line.split()[:2] == ["labels", "mid,"] for line in lines)
    missing = run("models", "nope", "--server", server.address)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
