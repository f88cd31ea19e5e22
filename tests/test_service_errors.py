"""Every refusal of a service is one family: a `ServiceError` with a kind and the message shown as is."""

from __future__ import annotations

import pytest

from mailadmin.services.campaigns import CampaignError
from mailadmin.services.drafts import NOT_A_DRAFT_MESSAGE, DraftError, update_campaign
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.recipients import RecipientImportError
from mailadmin.services.suppressions import SuppressionError, remove_suppression
from mailadmin.services.users import UserError, find_user, set_active
from tests.factories import create_started_campaign


@pytest.mark.parametrize("error", [CampaignError, DraftError, RecipientImportError, SuppressionError, UserError])
def test_each_service_error_is_a_service_error(error):
    assert issubclass(error, ServiceError)


def test_a_refusal_says_its_kind_and_keeps_its_message(app, owner, admin):
    with pytest.raises(UserError) as unknown:
        find_user("nobody@example.com")
    with pytest.raises(UserError) as last_admin:
        set_active(admin, False, actor=admin)
    with pytest.raises(SuppressionError) as gone:
        remove_suppression(999_999, "moved back", admin)
    with pytest.raises(DraftError) as started:
        update_campaign(create_started_campaign(owner, 1), "Name", "Subject", "Body")

    assert (unknown.value.kind, unknown.value.message) == (ErrorKind.NOT_FOUND, "No user with the email nobody@example.com")
    assert last_admin.value.kind is ErrorKind.CONFLICT and str(last_admin.value) == last_admin.value.message
    assert gone.value.kind is ErrorKind.NOT_FOUND
    assert started.value.kind is ErrorKind.CONFLICT
    assert started.value.errors == {"campaign": [NOT_A_DRAFT_MESSAGE]}
    assert started.value.message == f"Campaign: {NOT_A_DRAFT_MESSAGE}"
