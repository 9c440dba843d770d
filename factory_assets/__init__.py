"""factory_assets package."""
