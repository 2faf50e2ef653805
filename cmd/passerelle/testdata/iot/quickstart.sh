#!/usr/bin/env bash
# The gcloud iot lines of Cloud IoT Core's documentation (the quickstart,
# "Creating registries and devices", "Creating gateways", "Binding devices
# to gateways", "Configuring devices"), with `gcloud iot` replaced by
# `passerelle iot` and nothing else changed. The test runs it against
# `passerelle serve` with PASSERELLE_ENDPOINT and PASSERELLE_TOKEN_FILE
# set and PROJECT_ID, REGION and KEYS (a folder with keys) given.
set -euo pipefail
cd "$(mktemp -d)"
trap 'rm -rf "$PWD"' EXIT

# Quickstart: a device key pair.
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -keyout rsa_private.pem -nodes \
    -out rsa_cert.pem -subj "/CN=unused" 2>/dev/null
  openssl ecparam -genkey -name prime256v1 -noout -out ec_private.pem
  openssl ec -in ec_private.pem -pubout -out ec_public.pem 2>/dev/null
else
  cp "$KEYS"/rsa_cert.pem "$KEYS"/ec_public.pem .
fi

# Quickstart: create a registry and a device.
passerelle iot registries create my-registry \
    --project=$PROJECT_ID \
    --region=$REGION \
    --event-notification-config=topic=projects/$PROJECT_ID/topics/my-device-events

passerelle iot devices create my-device \
    --project=$PROJECT_ID \
    --region=$REGION \
    --registry=my-registry \
    --public-key path=rsa_cert.pem,type=rs256

passerelle iot registries list --project=$PROJECT_ID --region=$REGION | grep -q '^my-registry  '"$REGION"'  MQTT_ENABLED$'
passerelle iot devices list --project=$PROJECT_ID --registry=my-registry --region=$REGION | grep -q '^my-device '

# Creating registries and devices: more registry settings, an ES256 device.
passerelle iot registries create my-other-registry \
    --project=$PROJECT_ID --region=$REGION \
    --enable-mqtt-config --no-enable-http-config \
    --event-notification-config=topic=my-device-events,subfolder=alerts \
    --event-notification-config=topic=my-device-events \
    --state-pubsub-topic=my-device-state
passerelle iot registries update my-other-registry --project=$PROJECT_ID --region=$REGION --log-level=debug
passerelle iot registries describe my-other-registry --project=$PROJECT_ID --region=$REGION --format='value(logLevel,httpConfig.httpEnabledState)' | grep -qx $'DEBUG\tHTTP_DISABLED'

passerelle iot devices create my-es-device \
    --project=$PROJECT_ID --region=$REGION --registry=my-registry \
    --public-key path=ec_public.pem,type=es256 \
    --metadata=owner=ops,floor=3
passerelle iot devices describe my-es-device --project=$PROJECT_ID --region=$REGION --registry=my-registry \
    --format='value(metadata.owner)' | grep -qx ops
passerelle iot devices update my-es-device --project=$PROJECT_ID --region=$REGION --registry=my-registry --blocked
passerelle iot devices describe my-es-device --project=$PROJECT_ID --region=$REGION --registry=my-registry \
    --format=json | grep -q '"blocked": true'
passerelle iot devices credentials create --path=rsa_cert.pem --type=rsa-x509-pem \
    --device=my-es-device --registry=my-registry --region=$REGION --project=$PROJECT_ID
passerelle iot devices credentials list --device=my-es-device --registry=my-registry --region=$REGION --project=$PROJECT_ID \
    | grep -q '^1      RSA_X509_PEM'
passerelle iot devices credentials delete 1 --quiet --device=my-es-device --registry=my-registry --region=$REGION --project=$PROJECT_ID

# Configuring devices.
echo '{"fan": "on"}' > config.json
passerelle iot devices configs update --config-file=config.json \
    --device=my-device --registry=my-registry --region=$REGION --project=$PROJECT_ID
passerelle iot devices configs update --config-data='{"fan": "off"}' --version-to-update=2 \
    --device=my-device --registry=my-registry --region=$REGION --project=$PROJECT_ID
passerelle iot devices configs list --device=my-device --registry=my-registry --region=$REGION --project=$PROJECT_ID \
    --format='value(version)' | tr '\n' ' ' | grep -qx '3 2 1 '
[ "$(passerelle iot devices configs get-value --device=my-device --registry=my-registry --region=$REGION --project=$PROJECT_ID)" = '{"fan": "off"}' ]
# A stale version is refused (exit 1, the API's code).
if passerelle iot devices configs update --config-data=x --version-to-update=1 \
    --device=my-device --registry=my-registry --region=$REGION --project=$PROJECT_ID 2>err.txt; then
  echo "a stale --version-to-update was accepted" >&2; exit 1
fi
grep -q '^ERROR: (passerelle.iot.devices.configs.update) FAILED_PRECONDITION: ' err.txt

# Creating gateways.
passerelle iot devices create my-gateway \
    --project=$PROJECT_ID \
    --region=$REGION \
    --registry=my-registry \
    --device-type=gateway \
    --auth-method=association-only \
    --public-key path=rsa_cert.pem,type=rs256
passerelle iot devices create my-bound-device \
    --project=$PROJECT_ID \
    --region=$REGION \
    --registry=my-registry \
    --device-type=non-gateway

# Binding devices to gateways.
passerelle iot devices gateways bind \
    --device=my-bound-device \
    --device-region=$REGION \
    --device-registry=my-registry \
    --gateway=my-gateway \
    --gateway-region=$REGION \
    --gateway-registry=my-registry \
    --project=$PROJECT_ID
passerelle iot devices gateways list-bound-devices --gateway=my-gateway --registry=my-registry --region=$REGION --project=$PROJECT_ID \
    | grep -q '^my-bound-device '
passerelle iot devices gateways list --device=my-bound-device --registry=my-registry --region=$REGION --project=$PROJECT_ID \
    --format='value(id)' | grep -qx my-gateway
passerelle iot devices list --registry=my-registry --region=$REGION --project=$PROJECT_ID --device-type=gateway \
    --format='value(id)' | grep -qx my-gateway
passerelle iot devices gateways unbind \
    --device=my-bound-device \
    --device-region=$REGION \
    --device-registry=my-registry \
    --gateway=my-gateway \
    --gateway-region=$REGION \
    --gateway-registry=my-registry \
    --project=$PROJECT_ID

# Cleaning up.
for d in my-bound-device my-gateway my-es-device my-device; do
  passerelle iot devices delete $d --project=$PROJECT_ID --region=$REGION --registry=my-registry --quiet
done
passerelle iot registries delete my-registry --project=$PROJECT_ID --region=$REGION --quiet
passerelle iot registries delete my-other-registry --project=$PROJECT_ID --region=$REGION --quiet
[ -z "$(passerelle iot registries list --project=$PROJECT_ID --region=$REGION 2>/dev/null)" ]
echo "quickstart: OK"
