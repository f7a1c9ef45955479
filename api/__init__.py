"""The web doors: the JSON API, the widget, email links and the CLI. :func:`create_app` builds the app."""

from api.app import create_app

__all__ = ["create_app"]
