"""SMTP sending over smtplib (plain, STARTTLS or SSL, with login) and the classification of its failures."""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING, Any, Protocol

from config import MailSettings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class MailError(Exception):
    """Sending failed; ``temporary`` says whether trying again later may succeed."""

    temporary = False

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryMailError(MailError):
    """4xx replies, refused or dropped connections, timeouts before the message was handed over."""

    temporary = True


class ConfigurationMailError(TemporaryMailError):
    """The server refused our login, TLS or configuration: every message would fail alike.

    The message is kept; the outbox pauses the whole queue until a probe succeeds or an operator resumes.
    """


class PermanentMailError(MailError):
    """5xx replies to the sender, a recipient or the message: sending it again will not help."""


class MessageBuildError(PermanentMailError):
    """The message could not be built (a bad header, say): it never left, and it never will as it is."""


class UnknownOutcomeError(MailError):
    """The whole message went out but the server's verdict never came back: it may have been delivered.

    Sending it again could deliver it twice, so the outbox leaves it to the operator.
    """


@dataclass(frozen=True)
class OutgoingEmail:
    """What the outbox hands to a mailer."""

    to_address: str
    subject: str
    body_text: str
    body_html: str | None
    message_id: str
    headers: tuple[tuple[str, str], ...] = ()


class Mailer(Protocol):
    def send(self, email: OutgoingEmail) -> str:
        """Send ``email``; return the server's acceptance reply. Raise :class:`MailError` on failure."""
        ...

    def probe(self) -> None:
        """Connect and log in without sending anything; raise :class:`MailError` if that fails."""
        ...


def message_id_for(dedupe_key: str, from_address: str) -> str:
    """A stable Message-ID per outbox key, so an operator's resend is recognisable as the same message."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "giftrec.invalid"
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:24]
    return f"<giftrec.{digest}@{domain}>"


def build_message(email: OutgoingEmail, from_address: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = email.to_address
    msg["Subject"] = email.subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = email.message_id
    for name, value in email.headers:
        msg[name] = value
    msg.set_content(email.body_text)
    if email.body_html:
        msg.add_alternative(email.body_html, subtype="html")
    return msg


class _Tracking:
    """Notes when the server has said 354 (go ahead) and when the whole message, its end-of-data line
    included, was written: from then on a lost reply leaves the outcome unknown. A connection lost while
    the message was still being written is a temporary failure: the server never saw its end, so it
    cannot have accepted it."""

    payload_handed_over = False
    payload_written = False
    last_reply: tuple[int, bytes] = (0, b"")

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)  # type: ignore[misc]
        if self.payload_handed_over:
            self.payload_written = True  # smtplib writes the message and its final dot in one call

    def getreply(self) -> tuple[int, bytes]:
        code, text = super().getreply()  # type: ignore[misc]
        if code == 354:
            self.payload_handed_over = True
        self.last_reply = (code, text)
        return code, text


class _SMTP(_Tracking, smtplib.SMTP):
    pass


class _SMTPSSL(_Tracking, smtplib.SMTP_SSL):
    pass


def _code_error(code: int, text: Any, what: str) -> MailError:
    reply = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    message = f"{what}: {code} {reply}".strip()
    if 400 <= code < 500:
        return TemporaryMailError(message, code)
    return PermanentMailError(message, code)


class SmtpMailer:
    """Sends one message per connection; the connection honours ``mail.smtp_security`` and login."""

    def __init__(self, settings: MailSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.ssl_context = ssl_context or ssl.create_default_context()

    def _connect(self) -> _SMTP | _SMTPSSL:
        s = self.settings
        client: _SMTP | _SMTPSSL
        if s.smtp_security == "ssl":
            client = _SMTPSSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=self.ssl_context)
        else:
            client = _SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        try:
            client.ehlo()
            if s.smtp_security == "starttls":
                client.starttls(context=self.ssl_context)
                client.ehlo()
            if s.smtp_username:
                client.login(s.smtp_username, s.smtp_password)
        except BaseException:
            client.close()
            raise
        return client

    def probe(self) -> None:
        client: _SMTP | _SMTPSSL | None = None
        try:
            client = self._connect()
            client.noop()
        except smtplib.SMTPAuthenticationError as exc:
            raise _login_error(exc) from exc
        except (smtplib.SMTPNotSupportedError, ssl.SSLError) as exc:
            raise ConfigurationMailError(f"{type(exc).__name__}: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryMailError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if client is not None:
                _close(client)

    def send(self, email: OutgoingEmail) -> str:
        try:
            msg = build_message(email, self.settings.from_address)
        except Exception as exc:  # noqa: BLE001 - nothing has left: whatever went wrong, it is for good
            raise MessageBuildError(f"the message cannot be built: {type(exc).__name__}: {exc}") from exc
        client: _SMTP | _SMTPSSL | None = None
        try:
            client = self._connect()
            client.send_message(msg)
            code, text = client.last_reply
            return f"{code} {text.decode(errors='replace')}"
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _code_error(code, text, "recipient refused") from exc
        except smtplib.SMTPAuthenticationError as exc:
            # A login problem is the configuration's, not the message's: keep the message, pause the queue.
            raise _login_error(exc) from exc
        except (smtplib.SMTPNotSupportedError, ssl.SSLError) as exc:
            if client is None:  # while connecting: no STARTTLS or AUTH, a certificate that does not verify
                raise ConfigurationMailError(f"{type(exc).__name__}: {exc}") from exc
            if client.payload_written:
                raise UnknownOutcomeError(f"no reply after the message was sent: {exc!r}") from exc
            raise TemporaryMailError(f"{type(exc).__name__}: {exc}") from exc
        except smtplib.SMTPConnectError as exc:
            raise TemporaryMailError(f"connection refused: {exc.smtp_code}", exc.smtp_code) from exc
        except smtplib.SMTPResponseException as exc:
            raise _code_error(exc.smtp_code, exc.smtp_error, type(exc).__name__) from exc
        except (smtplib.SMTPException, OSError) as exc:
            if client is not None and client.payload_written:
                raise UnknownOutcomeError(f"no reply after the message was sent: {exc!r}") from exc
            if client is not None and client.payload_handed_over:
                raise TemporaryMailError(f"connection lost while the message was written: {exc!r}") from exc
            raise TemporaryMailError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if client is not None:
                _close(client)


def _login_error(exc: smtplib.SMTPAuthenticationError) -> ConfigurationMailError:
    return ConfigurationMailError(f"login refused: {exc.smtp_code} {exc.smtp_error!r}", exc.smtp_code)


def _close(client: _SMTP | _SMTPSSL) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
