"""What the server is configured with and what it reports: settings and Prometheus metrics."""
