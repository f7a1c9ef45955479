"""Domain errors: the web layer turns them into problem+json, the CLI into messages."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """A referenced entity does not exist."""

    status = 404

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"{entity} {key!s} not found")
        self.entity = entity
        self.key = key


class InvalidInput(DomainError):
    """Input is wrong; ``field`` names the part at fault."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class Conflict(DomainError):
    """The request conflicts with the current state (a duplicate, a finished selection...)."""

    status = 409
