"""Grafana boards, alert rules and provisioning as code (``smartcity grafana build|push``).

Everything operators see in Grafana is generated here from the device models, so a new device
type or a renamed field shows up on the boards (or fails the build) without editing JSON by hand.
The generated files are committed: ``grafana/dashboards/`` and ``grafana/provisioning/``.
"""
