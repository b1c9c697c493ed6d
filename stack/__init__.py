"""What starts the whole stack: the root ``smartcity`` command, which dispatches to each
component's subcommand, ``smartcity up`` and the servers it runs as children, and the broker's
account commands. The top layer (docs/architecture.md): it may import every component and the
core; nothing imports it.
"""
