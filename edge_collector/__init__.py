"""edge_collector package."""
