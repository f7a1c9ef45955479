"""`giftrec keys create|list|revoke|demo`: API keys for storefronts, email platforms and operators."""

from __future__ import annotations

import json
import os

import click
from flask import current_app
from flask.cli import AppGroup

from api.cli.common import transaction
from api.widget import demo_key, demo_key_path
from domain.access import api_keys, identity
from domain.models import API_KEY_SCOPES


@click.group("keys", cls=AppGroup)
def keys() -> None:
    """API keys (stored hashed; the secret is shown once)."""


@keys.command("create")
@click.option("--scope", type=click.Choice(API_KEY_SCOPES), required=True, help="what the key may do")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    metavar="URL",
    help="widget keys: a page origin allowed to call the API (repeatable), e.g. https://shop.example",
)
@click.option("--name", default="", help="a label, e.g. the shop or the integration")
def keys_create(scope: str, origins: tuple[str, ...], name: str) -> None:
    """Create a key and print its secret (shown only this once)."""
    if scope == "widget" and not origins:
        raise click.UsageError("a widget key needs at least one --origin (the storefront's page origin)")
    with transaction() as session:
        info, secret = api_keys.create_key(session, scope, name=name, origins=origins, actor="cli")
    click.echo(secret)
    click.echo(
        f"created {info.scope} key {info.prefix}"
        + (f" for {', '.join(info.allowed_origins)}" if info.allowed_origins else "")
        + ": store the secret now, it cannot be shown again",
        err=True,
    )
    if scope == "widget":
        click.echo(
            "the shop's backend signs its logged-in customers with the secret of "
            f"`giftrec keys identity-secret {info.prefix}` (docs/api.md)",
            err=True,
        )


@keys.command("list")
@click.option("--active", is_flag=True, help="leave out revoked keys")
@click.option("--json", "as_json", is_flag=True, help="one JSON array")
def keys_list(active: bool, as_json: bool) -> None:
    """List keys: prefix, scope, name, origins, created, last used, revoked."""
    with transaction() as session:
        rows = api_keys.list_keys(session, include_revoked=not active)
    if as_json:
        click.echo(json.dumps([_row(r) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no API keys: create one with `giftrec keys create --scope server`")
        return
    click.echo(
        f"{'prefix':<12} {'scope':<7} {'created':<20} {'last used':<20} {'revoked':<20} name / origins"
    )
    for r in rows:
        extra = " ".join(filter(None, [r.name, ",".join(r.allowed_origins)]))
        click.echo(
            f"{r.prefix:<12} {r.scope:<7} {r.created_at:<20} {r.last_used_at or '-':<20} "
            f"{r.revoked_at or '-':<20} {extra}"
        )


def _row(r: api_keys.KeyListing) -> dict[str, object]:
    return {
        "prefix": r.prefix,
        "scope": r.scope,
        "name": r.name,
        "allowed_origins": list(r.allowed_origins),
        "created_at": r.created_at,
        "last_used_at": r.last_used_at,
        "revoked_at": r.revoked_at,
    }


@keys.command("identity-secret")
@click.argument("prefix")
def keys_identity_secret(prefix: str) -> None:
    """Print the identity secret of the widget key PREFIX, for the shop's backend only.

    The backend signs the logged-in customer's id with it (HMAC-SHA256, docs/api.md); the widget sends
    the signature with the public key. Derived from the server's secret key: the same in every process,
    and changed only with a new widget key (or a new server.secret_key, which changes all of them).
    """
    with transaction() as session:
        found = {k.prefix: k for k in api_keys.list_keys(session, include_revoked=False)}.get(prefix.strip())
    if found is None or found.scope != "widget":
        raise click.ClickException(f"no active widget key {prefix!r}: see `giftrec keys list`")
    click.echo(identity.identity_secret(str(current_app.secret_key), found.prefix))


@keys.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key whose public part is PREFIX (e.g. gr_1a2b3c4d); it stops working within seconds."""
    with transaction() as session:
        info = api_keys.revoke_key(session, prefix, actor="cli")
    click.echo(f"revoked {info.scope} key {info.prefix}")


@keys.command("demo")
@click.option("--origin", "origins", multiple=True, metavar="URL", help="extra allowed origins")
def keys_demo(origins: tuple[str, ...]) -> None:
    """Make sure the demo storefront's widget key exists and print it (reused on later runs)."""
    settings = current_app.extensions["giftrec"].settings
    base = settings.server.base_url.rstrip("/")
    allowed = {base, f"http://127.0.0.1:{settings.server.port}", f"http://localhost:{settings.server.port}"}
    allowed.update(origins)
    secret = demo_key(settings)
    with transaction() as session:
        if secret:
            api_keys.register_key(session, secret, "widget", name="demo storefront", origins=sorted(allowed))
        else:
            _, secret = api_keys.create_key(
                session, "widget", name="demo storefront", origins=sorted(allowed), actor="cli"
            )
            path = demo_key_path(settings)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secret + "\n")
    click.echo(secret)
