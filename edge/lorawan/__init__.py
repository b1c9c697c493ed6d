"""``smartcity lorawan``: ChirpStack v4's events in, the contract out (docs/lorawan.md)."""
