"""/v1/docs without a CDN: Swagger UI's files come from the flask-swagger-ui package, served by the app."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, send_from_directory
from flask.typing import ResponseReturnValue

#: Swagger UI's dist files (bundle, preset, CSS, favicons), shipped inside the flask-swagger-ui wheel; only
#: the files are used, not its blueprint: apiflask renders the page from its own template.
ASSETS = Path(str(resources.files("flask_swagger_ui") / "dist"))
SWAGGER_UI_VERSION = version("flask-swagger-ui")

bp = Blueprint("api_docs", __name__, url_prefix="/v1/docs")

# Relative to the page (/v1/docs), so that they also hold under a path prefix (SCRIPT_NAME); the version in
# the path lets browsers keep the files until giftrec ships another Swagger UI.
_BASE = f"docs/swagger-ui/{SWAGGER_UI_VERSION}"
CONFIG = {
    "SWAGGER_UI_CSS": f"{_BASE}/swagger-ui.css",
    "SWAGGER_UI_BUNDLE_JS": f"{_BASE}/swagger-ui-bundle.js",
    "SWAGGER_UI_STANDALONE_PRESET_JS": f"{_BASE}/swagger-ui-standalone-preset.js",
    "DOCS_FAVICON": f"{_BASE}/favicon-32x32.png",
    # Swagger UI would otherwise send the document to an online validator for its badge.
    "SWAGGER_UI_CONFIG": {"validatorUrl": None},
}

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@bp.get(f"/swagger-ui/{SWAGGER_UI_VERSION}/<path:filename>")
def asset(filename: str) -> ResponseReturnValue:
    resp = send_from_directory(ASSETS, filename, max_age=365 * 24 * 3600)
    resp.cache_control.immutable = True
    return resp


def content_security_policy(html: str) -> str:
    """The docs page's policy: everything from this origin only, its inline script and style by hash
    (Swagger UI's CSS draws its icons from data: URLs)."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self' " + " ".join(hashes["script"]),
            "style-src 'self' " + " ".join(hashes["style"]),
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _with_policy(view: Callable[..., Any]) -> Callable[..., Any]:
    """apiflask's docs view returns the page's HTML; it goes out with a policy that lets nothing else in."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        html = view(*args, **kwargs)
        resp = Response(html, mimetype="text/html")
        resp.headers["Content-Security-Policy"] = content_security_policy(html)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    return wrapper


def init_app(app: Flask) -> None:
    """Point apiflask's docs page at the served files and serve them; give the page its policy (apiflask
    reads ``DOCS_DECORATORS`` on each call of its docs view)."""
    app.config.update(CONFIG)
    app.config["DOCS_DECORATORS"] = [_with_policy]
    app.register_blueprint(bp)
