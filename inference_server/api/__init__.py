"""The HTTP surface: routes, request/response schemas, authentication dependencies, error handlers."""
