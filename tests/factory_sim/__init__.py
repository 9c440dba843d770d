"""Tests of factory_sim."""
