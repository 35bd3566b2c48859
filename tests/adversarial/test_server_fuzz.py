"""Fuzzing ``tuneport server``'s routes with schemathesis, from OpenAI's own OpenAPI document (issue 13).

Schemathesis generates requests from the OpenAI fine-tuning subset the contract tests use (valid ones, and
invalid ones: wrong types, missing fields, odd strings in ids and queries, multipart bodies) and sends them over
real HTTP to a server on loopback. Every answer must be below 500 and, where the document describes the status,
match OpenAI's response schema. Bounded: a fixed number of examples per route, about a minute in all.

Left out: ``/chat/completions`` (a proxy to the serving engine; without one it answers 503 on purpose) and the
routes this server does not have (graders, checkpoint permissions, deleting models), which answer 404/405 and
are covered by the routing tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from tuneport.jobs.store import Store  # noqa: E402
from tuneport.local_backend.api.server import ServerConfig, make_server  # noqa: E402
from tuneport.providers.local import LocalProvider  # noqa: E402

OPENAPI = Path(__file__).resolve().parents[1] / "contracts" / "openai" / "openapi-finetuning.json"
EXAMPLES_PER_ROUTE = 40

schema = (
    schemathesis.openapi.from_path(str(OPENAPI))
    .include(path_regex=r"^/(files|uploads|fine_tuning/jobs|models)")
    .exclude(method="DELETE", path="/models/{model}")
)


@pytest.fixture
def api_url() -> Iterator[str]:
    """An in-thread server in this test's own home; jobs are recorded, never trained."""
    provider = LocalProvider(store=Store(), launch=False)
    srv = make_server("127.0.0.1", 0, config=ServerConfig(max_upload_bytes=1024 * 1024), provider=provider)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv.url
    srv.shutdown()
    srv.server_close()
    provider.store.close()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_route_answers_5xx_or_breaks_openai_schema(case, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url, checks=[not_a_server_error, response_schema_conformance], timeout=30
    )
