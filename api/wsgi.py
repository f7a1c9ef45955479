"""WSGI entry point for gunicorn (`gunicorn api.wsgi:app`): the app, with the model loading at start-up."""

import gc
import importlib
import sys

from api import create_app
from api.observe import configure_logging

#: Modules the app imports where they are used, so that a command line does not pay for them (about a
#: second of CPU together): a serving process imports them now, before the freeze below, so that no
#: request waits for them (the next purchase's timing, the learned ranker's and the neighbours' artifacts,
#: the managers' selections, the campaign reports).
SERVING_IMPORTS = (
    "scipy.optimize",
    "scipy.stats",
    "sklearn.ensemble",
    "sklearn.feature_extraction.text",
    "sklearn.neighbors",
    "statsmodels.stats.proportion",
)

configure_logging(force=True)  # JSON lines with the request id (domain.logs)
for _module in SERVING_IMPORTS:
    importlib.import_module(_module)
app = create_app()
# Everything made so far (the imported modules, the app) lives as long as the process: out of the
# collector's sight, so that a full collection no longer walks those ~200,000 objects (50 ms and more
# holding the GIL) in the middle of the requests. Refcounting still frees them; only cyclic garbage among
# them would stay, and nothing made at start-up is dropped later.
gc.collect()
gc.freeze()
# Background threads (the model store's checks, the rebuild and rankings after a swap) give the GIL back
# to a waiting request thread after server.switch_interval seconds (Python's default: 5 ms).
sys.setswitchinterval(app.extensions["giftrec"].settings.server.switch_interval)
# A serving process starts loading the model now rather than on its first request (the CLI builds the app
# too, so create_app itself does not).
app.extensions["giftrec"].services["model_store"].start()
