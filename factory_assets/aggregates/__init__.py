"""Aggregates domain: daily per-line aggregates in the warehouse, gated on complete days."""
