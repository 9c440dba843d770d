"""Dimension tables of the warehouse: the crew (who set the dial, by name) and the lots (lot id and figures)."""
