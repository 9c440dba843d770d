"""Tests of factory_core."""
