"""Durable state: models, engine, migrations."""
