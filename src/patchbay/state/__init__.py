"""Shared state: in-process by default, Redis when several replicas share it."""
