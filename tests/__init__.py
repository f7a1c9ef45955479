"""Tests for giftrec."""
