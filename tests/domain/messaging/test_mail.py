"""SMTP sending against a real aiosmtpd server: security modes, login, and how failures are classified."""

from __future__ import annotations

import time

import pytest

from domain.messaging.mail import (
    OutgoingEmail,
    PermanentMailError,
    SmtpMailer,
    TemporaryMailError,
    UnknownOutcomeError,
    message_id_for,
)
from tests.delivery_fixtures import (
    HANG,
    RecordingHandler,
    authenticator,
    client_tls_context,
    free_port,
    server_tls_context,
    start_server,
    with_mail,
)


def _email(to: str = "bob@example.com") -> OutgoingEmail:
    return OutgoingEmail(
        to_address=to,
        subject="День рождения Анны: идеи",
        body_text="Plain body\n",
        body_html="<p>HTML body</p>",
        message_id=message_id_for("selection:1", "shop <reminders@shop.example.com>"),
        headers=(("List-Unsubscribe", "<https://x.example/unsubscribe/t>"),),
    )


def test_sends_text_and_html_alternatives(settings, smtp_server):
    mailer = SmtpMailer(with_mail(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port).mail)
    reply = mailer.send(_email())
    assert reply.startswith("250")
    [msg] = smtp_server.messages
    assert msg["Subject"] == "День рождения Анны: идеи"
    assert msg["Message-ID"].startswith("<giftrec.")
    assert msg["Message-ID"].endswith("@shop.example.com>")
    assert msg["List-Unsubscribe"] == "<https://x.example/unsubscribe/t>"
    assert msg.get_body(("plain",)).get_content().strip() == "Plain body"
    assert msg.get_body(("html",)).get_content().strip() == "<p>HTML body</p>"


def test_message_id_is_stable_per_key():
    assert message_id_for("selection:1", "a@b.c") == message_id_for("selection:1", "a@b.c")
    assert message_id_for("selection:1", "a@b.c") != message_id_for("selection:2", "a@b.c")


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        ("451 4.3.0 Try again later", TemporaryMailError, 451),
        ("554 5.7.1 Message rejected as spam", PermanentMailError, 554),
    ],
)
def test_data_replies_are_classified(settings, smtp_server, reply, error, code):
    smtp_server.handler.data_replies.append(reply)
    mailer = SmtpMailer(with_mail(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port).mail)
    with pytest.raises(error) as info:
        mailer.send(_email())
    assert info.value.code == code
    assert smtp_server.messages == []


def test_refused_recipient_is_permanent(settings, smtp_server):
    smtp_server.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
    mailer = SmtpMailer(with_mail(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port).mail)
    with pytest.raises(PermanentMailError, match="550"):
        mailer.send(_email("gone@example.com"))


def test_refused_connection_is_temporary(settings):
    mailer = SmtpMailer(with_mail(settings, smtp_port=free_port()).mail)
    with pytest.raises(TemporaryMailError):
        mailer.send(_email())


def test_a_server_that_never_answers_times_out_as_temporary(settings, silent_server):
    host, port = silent_server
    mailer = SmtpMailer(with_mail(settings, smtp_host=host, smtp_port=port, smtp_timeout=0.3).mail)
    started = time.monotonic()
    with pytest.raises(TemporaryMailError):
        mailer.send(_email())
    assert time.monotonic() - started < 3


def test_no_reply_after_the_message_went_out_is_an_unknown_outcome(settings, smtp_server):
    smtp_server.handler.data_replies.append(HANG)
    mail = with_mail(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_timeout=0.3).mail
    with pytest.raises(UnknownOutcomeError):
        SmtpMailer(mail).send(_email())


def test_starttls_with_login(settings, tls_files):
    handler = RecordingHandler()
    controller, port = start_server(
        handler,
        tls_context=server_tls_context(tls_files),
        require_starttls=True,
        authenticator=authenticator("shop", "s3cret"),
        auth_required=True,
    )
    try:
        mail = with_mail(
            settings,
            smtp_port=port,
            smtp_security="starttls",
            smtp_username="shop",
            smtp_password="s3cret",
        ).mail
        SmtpMailer(mail, ssl_context=client_tls_context(tls_files)).send(_email())
        assert len(handler.messages) == 1
        bad = with_mail(settings, smtp_port=port, smtp_security="starttls", smtp_username="shop").mail
        with pytest.raises(TemporaryMailError, match="login refused"):
            SmtpMailer(bad, ssl_context=client_tls_context(tls_files)).send(_email())
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_implicit_ssl(settings, tls_files):
    handler = RecordingHandler()
    controller, port = start_server(handler, ssl_context=server_tls_context(tls_files))
    try:
        mail = with_mail(settings, smtp_port=port, smtp_security="ssl").mail
        SmtpMailer(mail, ssl_context=client_tls_context(tls_files)).send(_email())
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_an_untrusted_certificate_is_not_accepted(settings, tls_files):
    handler = RecordingHandler()
    controller, port = start_server(handler, ssl_context=server_tls_context(tls_files))
    try:
        mail = with_mail(settings, smtp_port=port, smtp_security="ssl", smtp_timeout=1.0).mail
        with pytest.raises(TemporaryMailError):
            SmtpMailer(mail).send(_email())  # the system's CAs do not know our self-signed certificate
        assert handler.messages == []
    finally:
        controller.stop()
