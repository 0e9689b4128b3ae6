"""The chat page."""

from flask import Blueprint, render_template

from glm.http.context import current

bp = Blueprint("page", __name__)


@bp.get("/")
def index() -> str:
    """The chat page; its scripts and styles come from static/, never from a CDN."""
    loaded = current().loaded
    return render_template("index.html", model=loaded.name, about=loaded.about)
