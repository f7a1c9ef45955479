"""Fixtures of the domain tests: the real SMTP server and delivery rows (see tests/delivery_fixtures.py)."""

from tests.delivery_fixtures import mail_settings, silent_server, smtp_server, tls_files  # noqa: F401
