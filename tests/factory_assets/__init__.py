"""Tests of factory_assets."""
