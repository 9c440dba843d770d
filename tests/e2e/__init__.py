"""End-to-end tests: the users' paths (make demo, the Dagster UI in a browser) on the real services."""
