"""Tests of quality_model."""
