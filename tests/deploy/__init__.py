"""Tests of deploy/: the shipped compose, ECS, Helm, IAM and Prometheus files, loaded as shipped."""
