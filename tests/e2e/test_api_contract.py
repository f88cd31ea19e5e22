"""The API's contract, fuzzed by schemathesis against the running app (real HTTP, a live server):
every operation of /api/v1/openapi.json, with a token of each scope. No answer is a 5xx, every answer
matches its documented schema, status code, content type and headers, a request that breaks the
schema is refused, and an operation that needs a token refuses a request without one. (Not checked:
that every schema-valid body is accepted — a draft's templates are checked by the service beyond
what a schema can say, and answer 422 naming the field.) Half the cases aim at a real campaign of the token's user, so
the fuzz reaches drafts, starts and steering, not only 404s."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mailadmin import create_app
from mailadmin.extensions import db
from tests import factories
from tests.support.live_server import LiveServer

SCOPE_SETS = ("read", "write", "send", "read,write,send")
# Enough to touch each documented answer of each operation with every scope; a token lacking an
# operation's scope mostly meets the 403, so it gets fewer: the whole module takes about 2 minutes.
EXAMPLES = 8
NARROW_EXAMPLES = 3


@pytest.fixture
def api_server(app, app_env):
    """The app behind a real HTTP server, with a rate limit the fuzz does not reach."""
    served = create_app({**app_env, "SETUP_LOGGING": False, "MAILER_API_REQUESTS_PER_MINUTE": "1000000"})
    with LiveServer(served) as server:
        yield server
    with served.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("scopes", SCOPE_SETS)
def test_every_operation_keeps_its_contract_for_a_token_of_each_scope(api_server, manager, scopes):
    schema = schemathesis.openapi.from_url(f"{api_server.url}/api/v1/openapi.json")
    token = factories.api_token(manager, scopes, name=f"fuzz {scopes}")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    examples = EXAMPLES if scopes == SCOPE_SETS[-1] else NARROW_EXAMPLES
    for operation in operations:
        for mode, count in ((GenerationMode.POSITIVE, examples), (GenerationMode.NEGATIVE, max(2, examples // 2))):
            _fuzz(operation, mode, count, token, manager)


def _fuzz(operation, mode: GenerationMode, examples: int, token: str, owner) -> None:
    """Run `examples` cases of one operation; half of the valid ones aim at a real campaign or contact."""
    real_ids = {"campaign_id": factories.create_campaign(owner, 3).id,
                "contact_id": factories.add_member(factories.create_list(owner, "Fuzzed"), "fuzz@example.com").id}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        if mode is GenerationMode.POSITIVE and len(repr(case.query)) % 2 == 0:
            for name in set(real_ids) & set(case.path_parameters or {}):
                case.path_parameters[name] = real_ids[name]
        case.call_and_validate(headers=factories.bearer(token), excluded_checks=[positive_data_acceptance])

    run()
