"""Persistence: tables, migrations and the vault that encrypts tokens on the way in."""
