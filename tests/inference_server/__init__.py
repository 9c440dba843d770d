"""Tests of inference_server."""
