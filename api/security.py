"""Security headers on every response: no MIME sniffing, a strict CSP on HTML pages, HSTS over TLS."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

#: HTML pages run only the app's own scripts; inline styles are allowed (the pages' small <style> blocks),
#: product images may come from the shop's CDN, and no page may be framed (clickjacking).
HTML_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' https: http: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HSTS = "max-age=31536000"


def add_security_headers(resp: Response) -> Response:
    """What every response carries; a view that sets its own Content-Security-Policy keeps it."""
    headers = resp.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if resp.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", HTML_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return resp


def api_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """What :func:`add_security_headers` gives a JSON response, for a door that answers before Flask."""
    extra = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin")]
    if environ.get("wsgi.url_scheme") == "https":
        extra.append(("Strict-Transport-Security", HSTS))
    return extra


def register(app: Flask) -> None:
    app.after_request(add_security_headers)
