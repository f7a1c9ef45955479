"""The account managers' pages in a real headless Chromium against the running app, on the demo data:
sign in, Today, a selection, replace a pick, a note, the preview, approve; the email then leaves through a
real SMTP server carrying the replacement and the note. And the review page by keyboard alone."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from config import load_settings
from domain.customers.imports import import_orders
from domain.db import session_scope
from domain.demo.people import DEMO_TODAY
from domain.demo.seed import DEMO_MANAGERS, DEMO_PASSWORD, seed_demo
from domain.messaging.mail import SmtpMailer
from domain.messaging.sending import send_outbox
from domain.models import Customer, GiftSelection, User
from domain.reminders.planning import plan_due_selections
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import SAMPLE
from tests.delivery_fixtures import make_customer, make_selection, smtp_server  # noqa: F401

pytestmark = pytest.mark.browser

NOW = dt.datetime.combine(DEMO_TODAY, dt.time(9, 0))
NOTE = "I chose the second one myself: she mentioned it at the spring show."


@pytest.fixture
def settings(tmp_path, database_url, smtp_server):  # noqa: F811
    return load_settings(
        environ={},
        database={"url": database_url},
        server={"instance_dir": str(tmp_path / "instance"), "secret_key": "browser-secret"},
        model={"artifact_dir": str(tmp_path / "models"), "num_threads": 1},
        mail={"smtp_host": smtp_server.host, "smtp_port": smtp_server.port, "smtp_timeout": 5.0},
    )


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(SCREENSHOTS / f"manage_{name}.png"), full_page=True)


def _sign_in(page, base: str, email: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/manage/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:has-text('Today')")


def test_a_demo_manager_reviews_and_approves_and_the_email_leaves(app, live_server, page, smtp_server):  # noqa: F811
    ctx = app.extensions["giftrec"]
    ctx.services["clock"] = lambda: NOW
    with session_scope(ctx.sessions) as s:
        import_orders(s, SAMPLE, "online-retail", instance_dir=ctx.settings.server.instance_dir)
    with session_scope(ctx.sessions) as s:
        seed_demo(s, today=DEMO_TODAY)
    with session_scope(ctx.sessions) as s:
        assert plan_due_selections(s, ctx.settings, NOW.replace(hour=6)).awaiting_review > 0
    email, _ = DEMO_MANAGERS[0]
    with ctx.sessions() as s:
        anna = s.scalar(select(User).where(User.email == email))
        target = s.scalar(
            select(GiftSelection)
            .join(Customer, Customer.id == GiftSelection.customer_id)
            .where(
                GiftSelection.status == "awaiting_review",
                Customer.account_manager_id == anna.id,
                Customer.email_consent.is_(True),
            )
            .order_by(GiftSelection.review_cutoff_at)
            .limit(1)
        )
        assert target is not None, "the demo has a VIP selection of Anna's waiting for review"
        customer_email = s.get(Customer, target.customer_id).email

    _sign_in(page, live_server, email, DEMO_PASSWORD)
    assert (
        page.locator("ul.counts")
        .inner_text()
        .startswith(str(page.locator("table[aria-labelledby=awaiting] tbody tr").count()))
    )
    _shot(page, "today")

    page.locator(f"a[href='/manage/selections/{target.id}']").first.click()
    page.wait_for_selector("h2:has-text('Picks by price tier')")
    _shot(page, "selection")
    first_card = page.locator(".tier .card").first
    old_title = first_card.locator("div > div").first.inner_text()
    first_card.get_by_role("link", name="Replace").click()
    page.wait_for_selector("#replace")
    option = page.locator("#replace .card").first
    new_title = option.locator("div > div").first.inner_text()
    _shot(page, "replace")
    option.get_by_role("button", name=f"Use {new_title}").click()
    page.wait_for_selector(".flash:has-text('Pick replaced')")
    assert (
        new_title in page.locator(".tiers").inner_text()
        and old_title not in page.locator(".tiers").inner_text()
    )

    page.get_by_label("Personal note in the email").fill(NOTE)
    page.get_by_role("button", name="Save note").click()
    page.wait_for_selector(".flash:has-text('Note saved')")

    page.get_by_role("link", name="Preview the email").click()
    page.wait_for_selector("#email-text")
    text = page.locator("#email-text").inner_text()
    assert NOTE in text and new_title in text and old_title not in text
    frame = page.frame_locator("iframe.preview-frame")
    assert NOTE in frame.locator("body").inner_text()
    _shot(page, "preview")

    page.get_by_role("button", name="Approve version 3").click()
    page.wait_for_selector(".flash:has-text('Approved')")
    assert "the email is queued" in page.locator(".flash").inner_text()
    _shot(page, "approved")

    report = send_outbox(ctx.sessions, ctx.settings, SmtpMailer(ctx.settings.mail), NOW, "browser-test")
    assert len(report.sent) >= 1
    (message,) = [m for m in smtp_server.messages if m["To"] == customer_email]
    body = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert NOTE in body and new_title in body and old_title not in body
    assert NOTE in html
    with ctx.sessions() as s:
        assert s.get(GiftSelection, target.id).status == "sent"


def test_the_review_page_works_by_keyboard_and_every_input_has_a_label(app, live_server, page):
    ctx = app.extensions["giftrec"]
    ctx.services["clock"] = lambda: NOW
    with session_scope(ctx.sessions) as s:
        from domain.access.users import create_user

        anna = create_user(s, "anna@example.com", "Anna Manager", "a long password", "manager")
        sel = make_selection(
            s, make_customer(s, name="Olga Ivanova", account_manager_id=anna.id, is_vip=True)
        )
        sel.status, sel.review_cutoff_at = "awaiting_review", dt.datetime(2011, 12, 5)
        selection_id = sel.id
    _sign_in(page, live_server, "anna@example.com", "a long password")
    page.goto(f"{live_server}/manage/selections/{selection_id}")

    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map(el => el.name)"""
    )
    assert unlabelled == []

    reached: list[str] = []
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "() => { const e = document.activeElement; const name = e.getAttribute('aria-label')"
                " || e.innerText || e.name || ''; return (e.tagName + ':' + name).trim(); }"
            )
        )
    joined = "\n".join(reached)
    for wanted in (
        "A:Skip to content",
        "Remove Product",
        "TEXTAREA:note",
        "BUTTON:Save note",
        "Approve version 1",
    ):
        assert wanted in joined, (wanted, reached)
    # Approve by keyboard alone.
    page.goto(f"{live_server}/manage/selections/{selection_id}")
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.innerText") == "Approve version 1":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector(".flash:has-text('Approved')")
    _shot(page, "keyboard_approved")
    with ctx.sessions() as s:
        assert s.get(GiftSelection, selection_id).status == "approved"


def _demo(ctx) -> None:  # type: ignore[no-untyped-def]
    """The demo as `make run` has it on the demo's today: the sample, seeded people, planned selections,
    three nightly RFM snapshots."""
    from domain.lifecycle.snapshots import take_snapshot

    with session_scope(ctx.sessions) as s:
        import_orders(s, SAMPLE, "online-retail", instance_dir=ctx.settings.server.instance_dir)
    with session_scope(ctx.sessions) as s:
        seed_demo(s, today=DEMO_TODAY)
    with session_scope(ctx.sessions) as s:
        plan_due_selections(s, ctx.settings, NOW.replace(hour=6))
    for days in (14, 7, 0):
        with session_scope(ctx.sessions) as s:
            take_snapshot(s, ctx.settings.rfm, DEMO_TODAY - dt.timedelta(days=days))


def test_an_admin_assigns_a_client_the_manager_sees_it_and_approves_a_batch(app, live_server, page):
    from domain.demo.seed import DEMO_ADMIN
    from domain.models import TriggerAssignment

    ctx = app.extensions["giftrec"]
    ctx.services["clock"] = lambda: NOW
    _demo(ctx)
    (anna_email, _), (bruno_email, _) = DEMO_MANAGERS
    with session_scope(ctx.sessions) as s:
        anna = s.scalar(select(User).where(User.email == anna_email))
        bruno = s.scalar(select(User).where(User.email == bruno_email))
        moved = s.scalar(
            select(Customer).where(Customer.account_manager_id == bruno.id).order_by(Customer.id).limit(1)
        )
        moved_id, moved_name = moved.id, moved.name
        # A campaign to chart: the winback trigger's assignments on 80 customers (40 treated, 40 control).
        customers = s.scalars(select(Customer.id).order_by(Customer.id).limit(80)).all()
        for i, cid in enumerate(customers):
            s.add(
                TriggerAssignment(
                    customer_id=cid,
                    trigger="winback",
                    window_key="demo",
                    eligible_on=DEMO_TODAY - dt.timedelta(days=20),
                    eligible_at=NOW - dt.timedelta(days=20),
                    period="2011Q4",
                    arm="treatment" if i % 2 else "control",
                )
            )

    _sign_in(page, live_server, DEMO_ADMIN[0], DEMO_PASSWORD)
    page.get_by_role("link", name="Clients").click()
    page.wait_for_selector("h1:has-text('Clients and their managers')")
    page.locator(f"#client-{moved_id}").check()
    page.get_by_label("Manager").select_option(str(anna.id))
    page.get_by_role("button", name="Assign", exact=True).click()
    page.wait_for_selector(".flash:has-text('1 client(s) assigned to Anna Manager (demo).')")
    _shot(page, "admin_clients")
    page.get_by_role("link", name="Users").click()
    page.wait_for_selector("h1:has-text('Users')")
    _shot(page, "admin_users")
    page.get_by_role("link", name="Campaigns").click()
    page.wait_for_selector("svg.chart.uplift")
    assert page.locator("svg.chart.uplift").count() == 1
    assert page.locator("svg.chart.sizes polyline").count() >= 3
    _shot(page, "admin_campaigns")
    page.get_by_role("button", name="Sign out").click()

    _sign_in(page, live_server, anna_email, DEMO_PASSWORD)
    page.goto(f"{live_server}/manage/clients/{moved_id}")
    page.wait_for_selector(f"h1:has-text('{moved_name}')")
    assert "Anna Manager (demo)" in page.locator("dl").inner_text()
    page.get_by_label("How").select_option("call")
    page.get_by_label("Note (optional)").fill("Called about the new season")
    page.get_by_role("button", name="Log a contact").click()
    page.wait_for_selector(".flash:has-text('Contact logged (call).')")
    _shot(page, "client")

    page.get_by_role("link", name="Batch approval").click()
    page.wait_for_selector("h1:has-text('Batch approval')")
    n = page.locator("section.batch-item").count()
    assert n > 0 and page.locator("section.batch-item iframe.preview-frame").count() == n
    frames = page.frame_locator("section.batch-item iframe.preview-frame")
    texts = page.locator("section.batch-item pre.email-text")
    for i in range(n):  # each email in full (HTML as the plain text part greets), before anything is approved
        greeting = texts.nth(i).text_content().strip().splitlines()[0]
        assert frames.nth(i).locator("body").inner_text().startswith(greeting)
    # Chromium paints sandboxed (out-of-process) frames below the fold only inside the viewport: make it
    # as tall as the page so that the screenshot shows every email.
    page.set_viewport_size({"width": 1280, "height": page.evaluate("document.body.scrollHeight")})
    _shot(page, "batch")
    page.set_viewport_size({"width": 1280, "height": 900})
    # By keyboard: a pointer click right after the resize could land while the frames are laid out again.
    with page.expect_navigation():
        page.get_by_role("button", name=f"Approve all {n} as shown").focus()
        page.keyboard.press("Enter")
    assert f"{n} approved" in page.locator("main").inner_text(), page.locator("main").inner_text()[:2000]
    _shot(page, "batch_approved")
    with ctx.sessions() as s:
        left = s.scalars(
            select(GiftSelection)
            .join(Customer, Customer.id == GiftSelection.customer_id)
            .where(Customer.account_manager_id == anna.id, GiftSelection.status == "awaiting_review")
        ).all()
    assert left == [] or n == 20
