"""Campaign pages."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import select

from mailadmin.auth.decorators import login_required
from mailadmin.extensions import db
from mailadmin.models import Campaign

bp = Blueprint("campaigns", __name__)


@bp.route("/")
@login_required
def index():
    query = select(Campaign).order_by(Campaign.id.desc())
    if not current_user.is_admin:
        query = query.where(Campaign.owner_id == current_user.id)
    campaigns = db.session.scalars(query.limit(50)).all()
    return render_template("campaigns/index.html", campaigns=campaigns)
