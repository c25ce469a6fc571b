"""Seeing inside the running service: Prometheus metrics, readiness, traces, and the ops HTTP
listener that serves them."""
