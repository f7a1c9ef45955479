"""/v1/docs in a real headless Chromium with no way out: every file it needs comes from the app itself."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import SCREENSHOTS

pytestmark = pytest.mark.browser

LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def test_the_api_docs_work_offline_under_their_content_security_policy(live_server, page):
    blocked: list[str] = []
    problems: list[str] = []

    def only_loopback(route):  # type: ignore[no-untyped-def]
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", only_loopback)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    # A violation of the page's Content-Security-Policy is reported as an event, and on the console.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )

    response = page.goto(f"{live_server}/v1/docs")
    assert response is not None and response.status == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    summary = page.locator(".opblock-summary-path", has_text="/v1/customers/{customer_id}/recommendations")
    try:
        summary.first.wait_for(timeout=15_000)
    except PlaywrightTimeout:
        pytest.fail(f"no operation shown; blocked requests: {blocked}, errors: {problems}")
    assert page.locator(".opblock-summary-description", has_text="Personal picks for a customer").count() == 1
    assert page.locator(".opblock").count() >= 11  # every /v1 operation
    page.locator(".opblock-summary-path", has_text="/v1/events").first.click()
    page.locator(".opblock-body").first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "api_docs.png"), full_page=False)

    assert blocked == []
    assert problems == []
