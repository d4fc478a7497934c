"""Stoker: Hangfire-class background jobs for Kubernetes."""

__version__ = "0.1.0"
