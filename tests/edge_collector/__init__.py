"""Tests of edge_collector."""
