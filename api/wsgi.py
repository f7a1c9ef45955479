"""WSGI entry point for gunicorn (`gunicorn api.wsgi:app`): the app, with the model loading at start-up."""

import sys

from api import create_app
from api.observe import configure_logging

configure_logging(force=True)  # JSON lines with the request id (domain.logs)
app = create_app()
# Background threads (the model store's checks, the rebuild and rankings after a swap) give the GIL back
# to a waiting request thread after server.switch_interval seconds (Python's default: 5 ms).
sys.setswitchinterval(app.extensions["giftrec"].settings.server.switch_interval)
# A serving process starts loading the model now rather than on its first request (the CLI builds the app
# too, so create_app itself does not).
app.extensions["giftrec"].services["model_store"].start()
