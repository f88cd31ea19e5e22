"""The audiences blueprint alone, so that every route module (lists, members, contacts, imports,
segments) can add its routes to it without importing the package that registers them."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("audiences", __name__, url_prefix="/audiences")
