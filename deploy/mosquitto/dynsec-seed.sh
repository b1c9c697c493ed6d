#!/bin/sh
# On the broker's first start, put the accounts scripts/compose-env made (the dynamic security
# plugin's file: hashed passwords, the roles of smartcity/broker_acl.py) into the data volume,
# owner-only; from then on the plugin keeps its state there, devices added at runtime included,
# so later starts leave it alone. Then run the rest of the command line (the broker).
#   dynsec-seed.sh [COMMAND...]
set -eu
seed="${MQTT_DYNSEC_SEED_FILE:-/mosquitto/seed/dynamic-security.json}"
live="${MQTT_DYNSEC_FILE:-/mosquitto/data/dynamic-security.json}"
if [ ! -f "$live" ]; then
  if [ ! -s "$seed" ]; then
    echo "dynsec-seed.sh: $seed is missing or empty: run scripts/compose-env" >&2
    exit 1
  fi
  umask 077
  cp "$seed" "$live"
fi
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
