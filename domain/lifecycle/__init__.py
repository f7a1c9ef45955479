"""The lifecycle engine: daily RFM snapshots and segments, trigger emails, control groups, campaign report."""
