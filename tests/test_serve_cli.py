"""`idtune serve` as a process: bad ports are one line before any loading, the key stays off the
command line (issue 14, items 2, 12 and 14)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from idtune.serve import server

IDTUNE = [sys.executable, "-m", "idtune.cli"]


def run_cli(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*IDTUNE, *args], capture_output=True, text=True, timeout=timeout, **kw)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and all(n in err for n in needles), err
    return err


def test_port_in_use_fails_before_loading(tiny_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        t = time.monotonic()
        proc = run_cli("serve", str(tiny_model), "--port", str(port))
        one_line_error(proc, f"--port {port}", "already in use")
    assert time.monotonic() - t < 30  # no model was loaded first


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_impossible_port_is_one_line(port):
    one_line_error(run_cli("serve", "/nonexistent-model", "--port", port), "between 1 and 65535")


def test_bad_allow_host_is_one_line_before_loading():
    proc = run_cli("serve", "/nonexistent-model", "--allow-host", "*.lan")
    one_line_error(proc, "--allow-host *.lan", "without wildcards")


def test_api_key_on_the_command_line_is_refused():
    one_line_error(run_cli("serve", "--api-key", "sekret"), "IDTUNE_API_KEY", "--api-key-file")


def test_key_file_keeps_the_key_out_of_the_process_list(tiny_model, tmp_path):
    key = "file-key-0123456789"
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    port = server.free_port()
    env = {k: v for k, v in os.environ.items() if k != "IDTUNE_API_KEY"}
    args = ["serve", str(tiny_model), "--port", str(port), "--api-key-file", str(key_file)]
    proc = subprocess.Popen([*IDTUNE, *args], stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert key.encode() not in cmdline
        assert httpx.get(f"{url}/v1/models").status_code == 401
        ok = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    one_line_error(run_cli("serve", "--api-key-file", str(empty)), str(empty))
