#!/bin/sh
# Builds mosquitto's password file from the compose secrets, then starts the broker.
# printf is a shell builtin, so the passwords never appear in a process list.
set -eu
passwd=/mosquitto/data/passwd
umask 077
{
    printf 'edge-01:%s\n' "$(cat /run/secrets/mqtt_password)"
    printf 'consumer:%s\n' "$(cat /run/secrets/mqtt_consumer_password)"
} > "$passwd"
mosquitto_passwd -U "$passwd"
chown mosquitto:mosquitto "$passwd"
exec /docker-entrypoint.sh mosquitto -c /mosquitto/config/mosquitto.conf
