"""Scheduled changes: validated when created, applied later through the record services, once."""
