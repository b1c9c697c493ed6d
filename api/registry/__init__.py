"""The device registry and API keys, in SQL (SQLite by default, PostgreSQL by URL)."""
