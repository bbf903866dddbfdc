"""Alembic migrations for Even's schema, shipped inside the package (run by `even db upgrade`).

`env.py` is alembic's environment script; `versions/` holds one module per revision. Each
revision is frozen history: it spells out its own DDL instead of importing today's models, and
a new change to `even/store/tables.py` or `audit/store.py` needs a new revision (a test compares
the migrated schema with the models). To author one:
`alembic -c even/store/migrations/alembic.ini revision -m "what changes"`.
"""
