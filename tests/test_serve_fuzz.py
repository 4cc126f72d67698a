"""schemathesis against the API's own OpenAPI schema on loopback: no 5xx, no hang (issue 18).

Bounded: a fixed number of generated requests per operation, each with a time limit; the engine
caps max_tokens so a generated request cannot run long.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from idtune.serve import server


@pytest.fixture(scope="module")
def api_schema(tiny_model):
    eng = server.load_engine(
        str(tiny_model), max_tokens_limit=32, default_max_tokens=8, max_prompt_tokens=400
    )
    bg = server.Background(server.build_app(eng, ui=False))
    try:
        yield schemathesis.openapi.from_url(f"{bg.url}/v1/openapi.json")
    finally:
        bg.stop()
        eng.close()


def test_no_server_errors(api_schema):
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions"}
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):
            response = case.call(timeout=30)  # a hang fails here
            case.validate_response(response, checks=[not_a_server_error])

        check()
