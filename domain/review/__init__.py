"""The account managers' pages: what needs them today, a selection under review, a client's page."""
