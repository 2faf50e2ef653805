#!/usr/bin/env python3
"""Google's Cloud IoT Core manager sample, pointed at Passerelle.

The calls are those of python-docs-samples iot/api-client/manager/manager.py,
made with Google's discovery client (googleapiclient, Debian's
python3-googleapi), which builds itself from the discovery document the
manager serves. The only change a user makes: the discovery URL, and a
Passerelle admin token instead of a service account.

    PASSERELLE_DISCOVERY_URL='http://127.0.0.1:8080/$discovery/rest?version=v1' \
    PASSERELLE_TOKEN="$(cat passerelle-data/admin.token)" \
    PASSERELLE_ES256_PUBLIC_KEY="$(cat ec_public.pem)" \
    /usr/bin/python3 manager_sample.py

It prints one line per step and exits 1 at the first failure.
"""

import base64
import json
import os
import sys
import time

import google.oauth2.credentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError


def get_client(discovery_url, token):
    """The sample's get_client, with a bearer token for credentials."""
    credentials = google.oauth2.credentials.Credentials(token)
    return discovery.build(
        "cloudiotcore", "v1", discoveryServiceUrl=discovery_url,
        credentials=credentials, cache_discovery=False)


def error_of(err):
    """The {"code", "message", "status"} of an HttpError's body."""
    try:
        return json.loads(err.content.decode("utf-8"))["error"]
    except (ValueError, KeyError):
        return {"code": err.resp.status, "message": err.content, "status": ""}


def step(name, fn):
    """Runs one step; fn returns a detail to print, or None."""
    try:
        detail = fn()
    except Exception as e:  # any failure is the step's
        print("python: %s failed: %s: %s" % (name, type(e).__name__, e))
        sys.exit(1)
    print("python: %s%s" % (name, " (%s)" % detail if detail else ""))


def expect(ok, what):
    if not ok:
        raise AssertionError(what)


def expect_error(call, status, code, words=()):
    try:
        call.execute()
    except HttpError as e:
        err = error_of(e)
        expect(e.resp.status == code and err.get("status") == status,
               "HTTP %s %s, want %s %s" % (e.resp.status, err, code, status))
        for w in words:
            expect(w in err.get("message", ""), "message %r lacks %r" % (err.get("message"), w))
        return "HTTP %d %s" % (code, status)
    raise AssertionError("it succeeded, want %s" % status)


def main():
    url = os.environ["PASSERELLE_DISCOVERY_URL"]
    token = os.environ["PASSERELLE_TOKEN"]
    es256_key = os.environ["PASSERELLE_ES256_PUBLIC_KEY"]
    project, region = "p1", "us-central1"
    parent = "projects/%s/locations/%s" % (project, region)
    registry_id = "python-sample-%d" % int(time.time() * 1000)
    registry_name = "%s/registries/%s" % (parent, registry_id)
    topic = "projects/%s/topics/python-sample" % project
    state = {}

    def build():
        state["client"] = get_client(url, token)
        return url
    step("discovery.build", build)
    client = state["client"]
    registries = client.projects().locations().registries()
    devices = registries.devices()

    def create_registry():
        reg = registries.create(parent=parent, body={
            "eventNotificationConfigs": [{"pubsubTopicName": topic}], "id": registry_id}).execute()
        expect(reg["name"] == registry_name, "name %s" % reg["name"])
        return reg["name"]
    step("create_registry", create_registry)

    def list_registries():
        regs = registries.list(parent=parent).execute().get("deviceRegistries", [])
        expect(any(r["id"] == registry_id for r in regs), "the new registry is not listed")
        return "%d registries" % len(regs)
    step("list_registries", list_registries)

    def get_registry():
        reg = registries.get(name=registry_name).execute()
        expect(reg["eventNotificationConfigs"][0]["pubsubTopicName"] == topic, str(reg))
    step("get_registry", get_registry)

    def create_es256_device():
        dev = devices.create(parent=registry_name, body={
            "id": "es256-device",
            "credentials": [{"publicKey": {"format": "ES256_PEM", "key": es256_key}}],
        }).execute()
        expect(int(dev["numId"]) > 0 and dev["credentials"][0]["publicKey"]["format"] == "ES256_PEM", str(dev))
        return "numId %s" % dev["numId"]
    step("create_es256_device", create_es256_device)

    def create_unauth_device():
        devices.create(parent=registry_name, body={"id": "unauth-device"}).execute()
    step("create_unauth_device", create_unauth_device)

    def create_gateway():
        gw = devices.create(parent=registry_name, body={
            "id": "sample-gateway",
            "gatewayConfig": {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"},
        }).execute()
        expect(gw["gatewayConfig"]["gatewayType"] == "GATEWAY", str(gw))
    step("create_gateway", create_gateway)

    def list_devices():
        devs = devices.list(parent=registry_name).execute().get("devices", [])
        ids = sorted(d["id"] for d in devs)
        expect(ids == ["es256-device", "sample-gateway", "unauth-device"], "devices %s" % ids)
        return ", ".join(ids)
    step("list_devices", list_devices)

    def list_devices_with_field_mask():
        devs = devices.list(parent=registry_name, fieldMask="config,gateway_config").execute()["devices"]
        expect(all("config" in d and "gatewayConfig" in d for d in devs), str(devs))
        return "fieldMask=config,gateway_config"
    step("list_devices with a field mask", list_devices_with_field_mask)

    device_name = "%s/devices/es256-device" % registry_name

    def get_device():
        dev = devices.get(name=device_name).execute()
        expect(dev["id"] == "es256-device" and dev["name"].endswith("/" + dev["numId"]), str(dev))
        return "name %s" % dev["name"]
    step("get_device", get_device)

    def patch_es256_auth():
        dev = devices.patch(name=device_name, updateMask="credentials,metadata", body={
            "credentials": [{"publicKey": {"format": "ES256_PEM", "key": es256_key}}],
            "metadata": {"patched": "yes"},
        }).execute()
        expect(dev["metadata"] == {"patched": "yes"}, str(dev))
    step("patch_es256_auth", patch_es256_auth)

    def set_config():
        data = base64.urlsafe_b64encode(b"config from python").decode("ascii")
        cfg = devices.modifyCloudToDeviceConfig(name=device_name, body={
            "versionToUpdate": 0, "binaryData": data}).execute()
        expect(cfg["version"] == "2" and base64.b64decode(cfg["binaryData"]) == b"config from python", str(cfg))
        return "version %s" % cfg["version"]
    step("set_config", set_config)

    def get_config_versions():
        cfgs = devices.configVersions().list(name=device_name).execute()["deviceConfigs"]
        expect([c["version"] for c in cfgs] == ["2", "1"], str(cfgs))
        return "versions 2,1"
    step("get_config_versions", get_config_versions)

    def get_state():
        states = devices.states().list(name=device_name, numStates=5).execute()
        expect(states.get("deviceStates", []) == [], str(states))
        return "no states yet"
    step("get_state", get_state)

    def bind_device_to_gateway():
        registries.bindDeviceToGateway(parent=registry_name, body={
            "deviceId": "unauth-device", "gatewayId": "sample-gateway"}).execute()
    step("bind_device_to_gateway", bind_device_to_gateway)

    def list_devices_for_gateway():
        devs = devices.list(parent=registry_name,
                            gatewayListOptions_associationsGatewayId="sample-gateway").execute()["devices"]
        expect([d["id"] for d in devs] == ["unauth-device"], str(devs))
        return "unauth-device"
    step("list_devices_for_gateway", list_devices_for_gateway)

    step("send_command to a device that is not connected", lambda: expect_error(
        devices.sendCommandToDevice(name=device_name, body={
            "binaryData": base64.urlsafe_b64encode(b"reboot").decode("ascii")}),
        "FAILED_PRECONDITION", 400))

    step("get_iam_permissions", lambda: expect_error(
        registries.getIamPolicy(resource=registry_name, body={}), "UNIMPLEMENTED", 501, ["tokens file"]))

    def unbind_device_from_gateway():
        registries.unbindDeviceFromGateway(parent=registry_name, body={
            "deviceId": "unauth-device", "gatewayId": "sample-gateway"}).execute()
    step("unbind_device_from_gateway", unbind_device_from_gateway)

    step("get_device of a missing device", lambda: expect_error(
        devices.get(name="%s/devices/missing" % registry_name), "NOT_FOUND", 404))

    def delete_devices():
        for d in ("es256-device", "unauth-device", "sample-gateway"):
            devices.delete(name="%s/devices/%s" % (registry_name, d)).execute()
    step("delete_device x3", delete_devices)

    def delete_registry():
        registries.delete(name=registry_name).execute()
    step("delete_registry", delete_registry)
    step("get_registry after delete", lambda: expect_error(
        registries.get(name=registry_name), "NOT_FOUND", 404))
    print("python check: ok (googleapiclient %s against %s)" % (
        __import__("googleapiclient").__version__, url))


if __name__ == "__main__":
    main()
