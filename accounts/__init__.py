"""Signing in: hashed, expiring API tokens (knox) and the lockout after failed sign-ins (axes)."""
