"""Errors every command shares, so a component reports them without importing the root CLI."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; printed without a traceback, exit status 1."""
