"""The lifecycle engine: daily RFM snapshots and segments (triggers and control groups are to come)."""
