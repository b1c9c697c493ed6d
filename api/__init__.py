"""The API: Cremona's catalogue of smart services, device registry, alerts and open data.

Importing this package is cheap (no FastAPI): ``api.cli`` registers ``smartcity api`` on machines
that do not install the ``api`` extra.
"""
