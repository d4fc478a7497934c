"""Stoker: Hangfire-class background jobs for Kubernetes."""
