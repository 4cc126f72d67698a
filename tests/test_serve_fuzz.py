"""schemathesis against the served app, as a user would run it (issues 18 and 26).

The app is the one `idtune serve` runs (API + web chat on one port, bearer key) on loopback. The
schemathesis CLI runs every phase (the schema's examples, coverage, which also tries methods no
route takes, fuzzing, stateful) on every operation, and fails on a 5xx, a status the OpenAPI
document does not declare, or a method answered otherwise than 405 with `Allow`. The document
lists the served model's name in `model`, so generated requests do generate.

Bounded by example counts, not by time: a fixed number of generated requests per operation, and
the engine caps max_tokens (32) so no generated request runs long.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from idtune.serve import server

KEY = secrets.token_urlsafe(16)
EXAMPLES = 15  # generated requests per operation in the fuzzing phase
CHECKS = "not_a_server_error,status_code_conformance,unsupported_method"


@pytest.fixture(scope="module")
def served(tiny_model):
    eng = server.load_engine(
        str(tiny_model), max_tokens_limit=32, default_max_tokens=8, max_prompt_tokens=400
    )
    bg = server.Background(server.build_app(eng, api_key=KEY, ui=True))
    try:
        yield bg.url, eng
    finally:
        bg.stop()
        eng.close()


def test_schemathesis_finds_no_5xx_and_no_undocumented_status(served, tmp_path):
    url, eng = served
    config = tmp_path / "schemathesis.toml"  # the key comes from the environment, not argv
    config.write_text('headers = { Authorization = "Bearer ${IDTUNE_FUZZ_KEY}" }\n')
    har = tmp_path / "requests.har"
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [str(cli), "--no-color", "--config-file", str(config), "run", f"{url}/v1/openapi.json"]
    cmd += ["--checks", CHECKS, "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1"]
    cmd += ["--generation-database", "none", "--request-timeout", "300"]
    cmd += ["--report", "har", "--report-har-path", str(har)]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "IDTUNE_FUZZ_KEY": KEY}
    )
    took = time.monotonic() - started
    summary = proc.stdout[-6000:]
    assert proc.returncode == 0, summary
    entries = json.loads(har.read_text())["log"]["entries"]
    assert KEY not in har.read_text()
    seen = Counter(
        (e["request"]["method"], httpx.URL(e["request"]["url"]).path, e["response"]["status"])
        for e in entries
    )
    cases = next((x.strip() for x in summary.splitlines() if " generated, " in x), "?")
    print(f"schemathesis: {cases} ({len(entries)} requests) in {took:.0f} s")
    generated = {
        path: seen["POST", path, 200] for path in ("/v1/chat/completions", "/v1/completions")
    }
    assert all(n >= 5 for n in generated.values()), (generated, seen)  # generation ran
    for path in ("/health", "/v1/models", f"/v1/models/{eng.model_id}"):
        assert seen["GET", path, 200], (path, seen)
        assert seen["TRACE", path, 405], (path, seen)  # coverage tried a method no route takes
    assert not [k for k in seen if k[2] >= 500], seen


def test_methods_no_route_takes_are_405_with_allow(served):
    url, eng = served
    auth = {"Authorization": f"Bearer {KEY}"}
    cases = [
        ("TRACE", "/health", "GET"),
        ("DELETE", "/v1/models", "GET"),
        ("PUT", f"/v1/models/{eng.model_id}", "GET"),
        ("GET", "/v1/chat/completions", "POST"),
        ("OPTIONS", "/v1/completions", "POST"),
    ]
    for method, path, allow in cases:
        r = httpx.request(method, f"{url}{path}", headers=auth, timeout=60)
        assert r.status_code == 405, (method, path, r.status_code, r.text)
        assert r.headers["allow"] == allow
        assert r.json()["error"]["code"] == "method_not_allowed"
    r = httpx.request("DELETE", f"{url}/v1/nothing-here", headers=auth, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_openapi_declares_every_error_status(served):
    url, eng = served
    doc = httpx.get(f"{url}/v1/openapi.json", timeout=60).json()
    expected = {
        ("/health", "get"): {"200", "503"},
        ("/v1/models", "get"): {"200", "401"},
        ("/v1/models/{model_id}", "get"): {"200", "401", "404"},
        ("/v1/chat/completions", "post"): {"200", "400", "401", "404", "413", "500", "503"},
        ("/v1/completions", "post"): {"200", "400", "401", "404", "413", "500", "503"},
    }
    for (path, method), statuses in expected.items():
        op = doc["paths"][path][method]
        assert set(op["responses"]) == statuses, (path, set(op["responses"]))
        errors = statuses - {"200"} if path != "/health" else set()  # health: its own body
        for status in errors:
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
        if path != "/health":
            assert op["security"] == [{"bearer": []}]
    error = doc["components"]["schemas"]["_ErrorDetail"]
    assert set(error["properties"]) == {"message", "type", "param", "code"}
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    assert chat["application/json"]["schema"]["properties"]["model"]["enum"] == [eng.model_id]
