"""The device registry (SQLite by default, PostgreSQL by URL): its tables and engine.

In the core because several components read it: the API manages devices and keys, the
ingester tags points with registered zones, ``smartcity up`` registers the simulated fleet.
Importing it needs SQLAlchemy, which only the server-side extras install.
"""
