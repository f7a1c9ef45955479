"""API tests."""
