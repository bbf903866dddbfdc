"""Persistence for requests, certificates' serials and the schema version (SQLModel tables)."""
