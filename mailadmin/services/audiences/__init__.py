"""Audiences: contacts, lists with their memberships, segments, and a campaign's targets.

memberships.py holds the two writes every way in shares (a page, an import, the API, the public
form, an unsubscribe link): `upsert_contact` and `set_membership_status`, which records each change
of a membership in its history. Callers own the transaction (`services.transaction`).
"""
