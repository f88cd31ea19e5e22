"""/api/v1/contacts: upsert one or up to 10,000 (each row answered), read by id or address, search
(also by attribute), change attributes, delete, erase — through the audiences services."""

from __future__ import annotations

from dataclasses import asdict

from flask import url_for

from mailadmin.api import contact_schemas as schemas
from mailadmin.api.auth import api_user
from mailadmin.api.blueprint import NOT_FOUND, ApiBlueprint
from mailadmin.api.pagination import page_of, page_schema
from mailadmin.api.problems import ApiProblem
from mailadmin.extensions import db
from mailadmin.models import Contact
from mailadmin.services.audiences import upserts
from mailadmin.services.audiences.access import get_contact_for, visible_contacts
from mailadmin.services.audiences.lists import member_search_clause
from mailadmin.services.privacy import erase_person

blp = ApiBlueprint("api_contacts", __name__, url_prefix="/api/v1/contacts",
                   description="Contacts: one row per address, with attributes, on lists")


def _upsert(args: dict, contacts: list[dict]) -> list[upserts.RowResult]:
    inputs = [upserts.ContactInput(c["email"], c.get("name"), c.get("attributes")) for c in contacts]
    return upserts.upsert_contacts(api_user(), inputs, list_id=args.get("list_id"), status=args["status"],
                                   mode=args["mode"])


@blp.operation("POST", "", "write", schemas.ContactSchema, body=schemas.ContactUpsertSchema, idempotent=True,
               errors=NOT_FOUND, description="An existing contact, updated")
@blp.alt_response(201, schema=schemas.ContactSchema, description="A new contact")
def upsert_contact(args: dict):
    """Create or update one contact by its address (into `list_id`, required for a manager)."""
    result = _upsert(args, [args])[0]
    if result.outcome == upserts.RowOutcome.REJECTED:
        raise ApiProblem(422, "validation", result.error or "Not a valid address.", field="email")
    contact = db.session.get(Contact, result.contact_id)
    status = 201 if result.outcome == upserts.RowOutcome.CREATED else 200
    return contact, status, {"Location": url_for("api_contacts.get_contact",
                                                                       contact_id=contact.id)}


@blp.operation("POST", "/bulk", "write", schemas.BulkResultSchema, body=schemas.BulkUpsertSchema, idempotent=True,
               errors=NOT_FOUND)
def bulk_upsert(args: dict):
    """Create or update up to 10,000 contacts in one transaction; one result per row, in order."""
    results = _upsert(args, args["contacts"])
    counts = {outcome.value: sum(1 for r in results if r.outcome == outcome) for outcome in upserts.RowOutcome}
    return {**counts, "results": [asdict(r) | {"outcome": r.outcome.value} for r in results]}


@blp.operation("GET", "", "read", page_schema(schemas.ContactSchema, "ContactPage"), query=schemas.ContactSearchArgs,
               paged=True)
def list_contacts(args: dict, paging: dict):
    """The contacts this user may see, newest first: by address, or searched (`key=value`: an attribute)."""
    query = visible_contacts(api_user())
    if "email" in args:
        query = query.where(Contact.email == args["email"].strip().lower())
    if (clause := member_search_clause(args.get("search", ""))) is not None:
        query = query.where(clause)
    return page_of(query, Contact.id, paging)


def _contact(contact_id: int) -> Contact:
    if not 0 < contact_id < 2**31:
        raise ApiProblem(404, "not-found", "No such contact.")
    return get_contact_for(api_user(), contact_id)


@blp.operation("GET", "/<int:contact_id>", "read", schemas.ContactSchema, errors=NOT_FOUND)
def get_contact(contact_id: int):
    """One contact this user may see."""
    return _contact(contact_id)


@blp.operation("PATCH", "/<int:contact_id>", "write", schemas.ContactSchema, body=schemas.ContactPatchSchema,
               errors=NOT_FOUND)
def patch_contact(args: dict, contact_id: int):
    """Change a contact's name, or its attributes (merged, or replaced with `replace_attributes`)."""
    contact = _contact(contact_id)
    return upserts.update_contact(api_user(), contact.id, name=args.get("name"), attributes=args.get("attributes"),
                                  replace_attributes=args["replace_attributes"])


@blp.operation("DELETE", "/<int:contact_id>", "write", schemas.DeletedSchema, errors=NOT_FOUND)
def delete_contact(contact_id: int):
    """An admin deletes the contact; a manager takes it off their lists (gone when on no list then)."""
    return {"deleted": upserts.delete_contact(api_user(), _contact(contact_id).id)}


@blp.operation("POST", "/<int:contact_id>/erase", "write", schemas.ErasedSchema, errors=NOT_FOUND)
def erase_contact(contact_id: int):
    """Erase the person everywhere (admins only): every stored copy of the address replaced, the contact
    deleted; the address stays suppressed."""
    contact = _contact(contact_id)
    if not api_user().is_admin:
        raise ApiProblem(403, "admins-only", "Only an admin may erase a person's data.")
    return asdict(erase_person(contact.email, api_user()))
