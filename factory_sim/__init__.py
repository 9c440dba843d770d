"""factory_sim package."""
