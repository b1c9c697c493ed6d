#!/bin/sh
# Write the broker's password file, then run the rest of the command line (the broker).
#   make-passwd.sh PASSWD_FILE [COMMAND...]
# Service accounts come from MQTT_PASSWORD_<ACCOUNT> (docker-compose reads them from .env,
# which scripts/compose-env writes); field devices' hashed lines from $MQTT_DEVICES_PASSWD
# (made with: mosquitto_passwd -b devices.passwd <device-id> <password>) are appended.
set -eu
file="$1"
shift
umask 077
: > "$file"
for account in ingest simulator monitor observer; do
  var="MQTT_PASSWORD_$(echo "$account" | tr '[:lower:]' '[:upper:]')"
  eval "secret=\${$var:-}"
  if [ -z "$secret" ]; then
    echo "make-passwd.sh: $var is not set; run scripts/compose-env to write .env" >&2
    exit 1
  fi
  mosquitto_passwd -b "$file" "$account" "$secret"
done
devices="${MQTT_DEVICES_PASSWD:-/mosquitto/config/devices.passwd}"
if [ -f "$devices" ]; then
  cat "$devices" >> "$file"
fi
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
