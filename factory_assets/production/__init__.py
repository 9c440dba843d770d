"""Production domain: the per-production Parquet table, its features, checks and automation."""
