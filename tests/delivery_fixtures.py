"""Fixtures for the delivery tests: a real SMTP server (aiosmtpd on loopback) and one-off rows.

Imported by tests/domain/conftest.py and tests/jobs/conftest.py. The server records every message it
accepted; ``data_replies`` scripts its answers to DATA ("451 ..." / "550 ..." / HANG), and
``rcpt_replies`` its answer to a recipient.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import socket
import ssl
import struct
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.orm import Session

from config import Settings
from domain.models import (
    Customer,
    Event,
    GiftSelection,
    ImportantDate,
    Product,
    Recipient,
    RfmSnapshot,
    SelectionPick,
)

HANG = "hang"
#: Answer DATA only after ``RecordingHandler.slow_seconds`` (then accept): a send caught mid-flight.
SLOW = "slow"
NOW = dt.datetime(2011, 12, 1, 9, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.data_replies: deque[str] = deque()
        self.rcpt_replies: dict[str, str] = {}
        self.slow_seconds = 3.0
        #: Set when a SLOW message has arrived (its sender is waiting for the verdict).
        self.slow_started = threading.Event()
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            reply = self.data_replies.popleft() if self.data_replies else None
        if reply == HANG:  # swallow the message, never answer (the controller cancels us at teardown)
            await asyncio.sleep(3600)
        if reply == SLOW:  # keep the sender waiting, then accept as usual
            self.slow_started.set()
            await asyncio.sleep(self.slow_seconds)
            reply = None
        if reply is not None:
            return reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            n = len(self.messages)
        return f"250 2.0.0 Ok: queued as {n}"


@dataclasses.dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages]


def _start(handler: RecordingHandler, **kwargs: Any) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    controller, port = _start(handler)
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A port that accepts TCP connections but never says a word (a hung mail server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield "127.0.0.1", int(listener.getsockname()[1])


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, tls_files))
    return context


def client_tls_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


def authenticator(user: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
        ok = ok and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    return check


def start_server(handler: RecordingHandler, port: int | None = None, **kwargs: Any) -> tuple[Controller, int]:
    """Start a server (on ``port``, to bring a stopped one back on the same address)."""
    if port is None:
        return _start(handler, **kwargs)
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def mail_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return with_mail(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port)


def with_mail(settings: Settings, **mail: Any) -> Settings:
    defaults: dict[str, Any] = {"smtp_timeout": 2.0, "backoff_seconds": 60.0, "max_attempts": 3}
    return dataclasses.replace(settings, mail=dataclasses.replace(settings.mail, **(defaults | mail)))


# ------------------------------------------------------------------------------------------ one-off rows
_seq = iter(range(1, 10**9))


def make_customer(session: Session, **kw: Any) -> Customer:
    n = next(_seq)
    values: dict[str, Any] = {
        "external_id": f"C{n}",
        "name": "Alice Smith",
        "email": f"alice{n}@example.com",
        "locale": "en",
        "email_consent": True,
    }
    customer = Customer(**(values | kw))
    session.add(customer)
    session.flush()
    return customer


def make_snapshot(session: Session, customer_id: int, on: dt.date, segment: str, **kw: Any) -> RfmSnapshot:
    """A customer's RFM snapshot on one day (scores and value are placeholders unless given)."""
    values: dict[str, Any] = {
        "r_score": 1,
        "f_score": 3,
        "m_score": 3,
        "recency_days": 200,
        "frequency": 3,
        "monetary": Decimal("300"),
    }
    snapshot = RfmSnapshot(customer_id=customer_id, taken_on=on, as_of=on, segment=segment, **(values | kw))
    session.add(snapshot)
    return snapshot


def make_product(session: Session, price: str, **kw: Any) -> Product:
    n = next(_seq)
    values: dict[str, Any] = {
        "sku": f"SKU{n}",
        "title": f"Product {n}",
        "price": Decimal(price),
        "url": f"https://shop.example.com/p/{n}",
        "image_url": f"https://shop.example.com/img/{n}.jpg",
        "category": f"cat{n % 4}",
    }
    product = Product(**(values | kw))
    session.add(product)
    session.flush()
    return product


def add_cart(session: Session, customer: Customer, product: Product, at: dt.datetime) -> None:
    """The storefront's cart event: ``customer`` put ``product`` in the basket at ``at``."""
    session.add(Event(customer_id=customer.id, product_id=product.id, kind="cart", occurred_at=at))


def make_selection(
    session: Session,
    customer: Customer | None = None,
    *,
    status: str = "ready",
    occasion_on: dt.date = dt.date(2011, 12, 8),
    recipient_name: str = "Anna",
    kind: str = "birthday",
    products: list[Product] | None = None,
) -> GiftSelection:
    """A selection for a recipient's important date with three tiers of two picks each."""
    customer = customer or make_customer(session)
    recipient = Recipient(customer_id=customer.id, name=recipient_name, relationship_="wife", gender="female")
    session.add(recipient)
    session.flush()
    date = ImportantDate(recipient_id=recipient.id, kind=kind, month=occasion_on.month, day=occasion_on.day)
    session.add(date)
    session.flush()
    if products is None:
        products = [
            make_product(session, p) for p in ("12.50", "19.00", "45.00", "60.00", "150.00", "220.00")
        ]
    selection = GiftSelection(
        customer_id=customer.id,
        recipient_id=recipient.id,
        important_date_id=date.id,
        occasion_key=f"date:{date.id}",
        occasion_code=kind,
        occasion_on=occasion_on,
        year=occasion_on.year,
        status=status,
        tier_bounds=[[10, 25], [25, 100], [100, 300]],
    )
    for i, product in enumerate(products):
        selection.picks.append(
            SelectionPick(
                product_id=product.id,
                tier=i // 2 + 1,
                position=i % 2,
                score=1.0 - i / 10,
                source="collaborative",
                explanation="similar_to_your_purchases",
                price_at_pick=product.price,
            )
        )
    session.add(selection)
    session.flush()
    return selection


# ------------------------------------------------------------------------ a connection cut mid-DATA
class CuttingProxy:
    """A TCP proxy in front of the test SMTP server that cuts its first connection during DATA.

    ``cut="payload"``: after the server's 354 it forwards ``forward_bytes`` of the message, then stops
    reading and resets both sides (the end-of-data dot never reaches the server). ``cut="reply"``: it
    forwards the whole message (the server accepts it) and resets the client before the 250 reaches it.
    Later connections pass through untouched.
    """

    def __init__(self, target: SmtpServer, cut: str, forward_bytes: int = 4096) -> None:
        self.target, self.cut, self.forward_bytes = target, cut, forward_bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", int(self.listener.getsockname()[1])
        self.connections = 0
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection((self.target.host, self.target.port))
            cutting = self.connections == 1
            threading.Thread(target=self._pipe, args=(client, upstream, cutting), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, cutting), daemon=True).start()

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            s.close()

    def _pipe(self, client: socket.socket, upstream: socket.socket, cutting: bool) -> None:
        """Client to server; in a cut connection, counts the payload bytes after DATA."""
        seen = b""
        payload = -1  # bytes of message forwarded after the DATA command; -1 before it
        try:
            while chunk := client.recv(65536):
                if cutting and payload < 0:
                    seen = (seen + chunk)[-64:]
                    upstream.sendall(chunk)
                    if b"DATA\r\n" in seen.upper():
                        payload = 0
                    continue
                if cutting and self.cut == "payload" and payload + len(chunk) >= self.forward_bytes:
                    upstream.sendall(chunk[: self.forward_bytes - payload])
                    self.cuts += 1
                    self._reset(client, upstream)
                    return
                payload += len(chunk)
                upstream.sendall(chunk)
        except OSError:
            pass
        for s in (client, upstream):
            s.close()

    def _replies(self, upstream: socket.socket, client: socket.socket, cutting: bool) -> None:
        """Server to client; in a cut connection with ``cut="reply"``, the reply to the message is lost."""
        try:
            while chunk := upstream.recv(65536):
                if cutting and self.cut == "reply" and chunk.startswith(b"250") and b"queued" in chunk:
                    self.cuts += 1
                    self._reset(client)
                    return
                client.sendall(chunk)
        except OSError:
            pass
        for s in (client, upstream):
            s.close()

    def close(self) -> None:
        self.listener.close()
