#!/usr/bin/env python3
"""The gateway demo of the Cloud IoT Core documentation, on Passerelle's hub.

It does what cmd/hubdemo does, with the same output lines: creates a
registry with a Pub/Sub topic, a gateway through the hub's CreateGateway
(the hub keeps its key) and a device; attaches the device through the hub
with create_if_missing and bind_if_needed, which binds it; subscribes to the
configs of the device and of the gateway, printing each and logging it to a
CSV file; publishes 15 states on the device's behalf, each acknowledged;
shows where to read them; waits for enter ("Press enter to clean up"); and
cleans up.

    python3 examples/gateway_demo.py [--admin-addr 127.0.0.1:8080] [--hub-addr 127.0.0.1:8090]
        [--data-dir ./passerelle-data] [--token TOKEN] [--yes] [--set-config DATA]
        [--listen 30s] [--config-log <data-dir>/config_log.csv]

Every flag is also an environment variable, PASSERELLE_<FLAG>
(PASSERELLE_HUB_ADDR); flags win. The admin API (registries, devices) is
called over REST with the standard library; the hub with the generated
gRPC stubs.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
# Run from a checkout without installing the package.
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import grpc  # noqa: E402

from passerelle.hub import connect  # noqa: E402
from passerelle.hub.v1 import hub_pb2, hub_pb2_grpc  # noqa: E402


def duration(text: str) -> float:
    """Parse a Go-style duration (30s, 1m30s, 500ms) into seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (for example 30s, 1m, 500ms)")
    return sum(float(n) * units[u] for n, u in parts)


def go_duration(seconds: float) -> str:
    """Render seconds as Go's time.Duration prints them (5s, 1m0s, 500ms)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    m, s = divmod(seconds, 60)
    text = f"{s:g}s"
    if m:
        h, m = divmod(int(m), 60)
        text = f"{m}m{text}"
        if h:
            text = f"{h}h{text}"
    return text


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="gateway_demo", description=__doc__.splitlines()[0])
    p.add_argument("--admin-addr", default=env("PASSERELLE_ADMIN_ADDR", "127.0.0.1:8080"),
                   help="address of the admin API (as passerelle serve --admin-addr)")
    p.add_argument("--hub-addr", default=env("PASSERELLE_HUB_ADDR", "127.0.0.1:8090"),
                   help="address of the hub (as passerelle serve --hub-addr)")
    p.add_argument("--data-dir", default=env("PASSERELLE_DATA_DIR", "./passerelle-data"),
                   help="data folder of passerelle serve, where the admin token is")
    p.add_argument("--token", default=env("PASSERELLE_TOKEN", ""),
                   help="admin token (default: the content of <data-dir>/admin.token)")
    p.add_argument("--hub-ca", default=env("PASSERELLE_HUB_CA", ""),
                   help="CA file of the hub's TLS certificate: connect to the hub over TLS (default: plaintext)")
    p.add_argument("--yes", action="store_true", default=env("PASSERELLE_YES", "") in ("1", "true"),
                   help="run unattended: do not wait for enter where the sample pauses")
    p.add_argument("--set-config", default=env("PASSERELLE_SET_CONFIG", ""),
                   help="set this config on the bound device during the listening window")
    p.add_argument("--listen", type=duration, default=env("PASSERELLE_LISTEN", "30s"),
                   help="how long to listen for config messages (default 30s)")
    p.add_argument("--project", default=env("PASSERELLE_PROJECT", "passerelle-demo"),
                   help="project id of the demo's resources")
    p.add_argument("--region", default=env("PASSERELLE_REGION", "us-central1"),
                   help="location of the demo's registry")
    p.add_argument("--config-log", default=env("PASSERELLE_CONFIG_LOG", ""),
                   help="CSV file the received config messages are logged to; default <data-dir>/config_log.csv")
    p.add_argument("--states", type=int, default=int(env("PASSERELLE_STATES", "15")),
                   help="state messages to publish")
    p.add_argument("--state-interval", type=duration, default=env("PASSERELLE_STATE_INTERVAL", "1s"),
                   help="time between two state messages (the bridge takes one per second per device)")
    args = p.parse_args(argv)
    if isinstance(args.listen, str):
        args.listen = duration(args.listen)
    if isinstance(args.state_interval, str):
        args.state_interval = duration(args.state_interval)
    if not args.config_log:
        args.config_log = os.path.join(args.data_dir, "config_log.csv")
    return args


class AdminError(Exception):
    """A failed admin API call: its HTTP status and the server's message."""

    def __init__(self, method: str, path: str, status: int, body: str):
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body.strip()
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class Admin:
    """The admin API's REST v1, with the standard library."""

    def __init__(self, addr: str, token: str):
        self.base = f"http://{addr}/v1/"
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "authorization": f"Bearer {self.token}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise AdminError(method, path, err.code, err.read().decode(errors="replace")) from None
        return json.loads(raw) if raw.strip() else {}


def brief(device: dict) -> str:
    """A device as the sample prints it: its id, numId, config and gateway config."""
    return json.dumps({k: device.get(k) for k in ("config", "gatewayConfig", "id", "numId")},
                      separators=(",", ":"), sort_keys=True)


class Demo:
    def __init__(self, args: argparse.Namespace, token: str):
        self.args = args
        self.admin = Admin(args.admin_addr, token)
        ca = open(args.hub_ca, "rb").read() if args.hub_ca else None
        self.channel = connect(args.hub_addr, token=token, root_certificates=ca)
        self.hub = hub_pb2_grpc.HubStub(self.channel)

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def pause(self, prompt: str) -> None:
        if self.args.yes:
            return
        self.say(prompt)
        sys.stdin.readline()

    def run(self) -> None:
        a = self.args
        registry_id = f"test-registry-{int(time.time())}"
        gateway_id, device_id = "test-device-RS256", "test-device-noauthbind"
        parent = f"projects/{a.project}/locations/{a.region}"
        registry = f"{parent}/registries/{registry_id}"
        gateway = f"{registry}/devices/{gateway_id}"
        device = f"{registry}/devices/{device_id}"

        self.say("Running demo\n")
        self.say(f"Creating registry: {registry_id}")
        self.admin.call("POST", f"{parent}/registries", {
            "id": registry_id,
            "eventNotificationConfigs": [{"pubsubTopicName": f"projects/{a.project}/topics/gateway-demo"}],
        })
        self.say("Created registry\n")
        attach = None
        try:
            self.say(f"Creating gateway: {gateway_id}")
            self.hub.CreateGateway(hub_pb2.CreateGatewayRequest(
                parent=registry, gateway_id=gateway_id, algorithm=hub_pb2.ALGORITHM_RS256,
                gateway_auth_method=hub_pb2.GATEWAY_AUTH_METHOD_ASSOCIATION_ONLY), timeout=30)
            self.say(f"Created gateway {brief(self.admin.call('GET', gateway))}")
            self.say(f"Creating device to bind: {device_id}")
            dev = self.admin.call("POST", f"{registry}/devices", {
                "id": device_id,
                "gatewayConfig": {"gatewayType": "NON_GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"},
            })
            self.say(f"Created Device {brief(dev)}\n")

            self.say("Binding device")
            attach = self.attach(gateway, device_id)
            self.say("Device Bound!")

            self.listen(gateway, device, gateway_id, device_id)
            self.publish(registry_id, gateway, device, gateway_id, device_id)
            # Time to read the states before they go with the device.
            self.pause("Press enter to clean up")
        finally:
            if attach is not None:
                attach.cancel()
            self.cleanup(registry, registry_id, gateway, device, gateway_id, device_id)

    def attach(self, gateway: str, device_id: str) -> grpc.Call:
        """Attach the device through the hub, creating and binding it as
        needed, and keep it attached until the returned call is cancelled."""
        done = threading.Event()

        def requests():
            yield hub_pb2.AttachRequest(gateway=gateway, device_id=device_id,
                                        create_if_missing=True, bind_if_needed=True)
            done.wait()  # the request stream stays open: the device stays attached

        call = self.hub.Attach(requests())
        first = next(call)
        if first.WhichOneof("event") != "attached":
            raise RuntimeError(f"Attach: the first response is {first.WhichOneof('event')}, not attached")

        # The rest of the stream (re-attaches, gateway errors) is read by a
        # thread that ends with the call.
        def follow():
            try:
                for resp in call:
                    if resp.WhichOneof("event") == "error":
                        e = resp.error
                        self.say(f"Gateway error {e.error_type} for {e.device_id}: {e.description}")
            except grpc.RpcError:
                pass
            finally:
                done.set()

        threading.Thread(target=follow, daemon=True).start()
        return call

    def listen(self, gateway: str, device: str, gateway_id: str, device_id: str) -> None:
        a = self.args
        self.say(f"Listening for messages for {go_duration(a.listen)}")
        self.say("Try setting configuration with:")
        token_file = os.path.join(a.data_dir, "admin.token")
        self.say(f"  grpcurl -plaintext -H \"authorization: Bearer $(cat {token_file})\" -d "
                 f"'{{\"name\": \"{device}\", \"binaryData\": \"ZGV2aWNlLWNvbmZpZw==\"}}' "
                 f"{a.admin_addr} google.cloud.iot.v1.DeviceManager/ModifyCloudToDeviceConfig")
        self.pause("Press enter to continue")

        os.makedirs(os.path.dirname(os.path.abspath(a.config_log)), mode=0o700, exist_ok=True)
        with open(a.config_log, "w", newline="") as f:
            self.say(f"Logging config messages to {a.config_log}")
            log = csv.writer(f)
            log.writerow(["time", "topic", "data"])
            self.say(f"Attaching: /devices/{device_id}/attach")
            self.say("Waiting for device to attach.")
            messages: queue.Queue = queue.Queue()
            streams = []
            for target_id, target_device in ((device_id, device_id), (gateway_id, "")):
                stream = self.hub.SubscribeConfig(hub_pb2.SubscribeConfigRequest(
                    gateway=gateway, device_id=target_device))
                streams.append(stream)

                def read(stream=stream, topic=f"/devices/{target_id}/config"):
                    try:
                        for c in stream:
                            messages.put((topic, c.data.decode(errors="replace")))
                    except grpc.RpcError as err:
                        messages.put(err)

                threading.Thread(target=read, daemon=True).start()
            set_done = not a.set_config
            # The window is timed here, not by a stream deadline (the hub
            # could report an expired deadline first, which would look like
            # a failure).
            end = time.monotonic() + a.listen
            try:
                while (left := end - time.monotonic()) > 0:
                    try:
                        m = messages.get(timeout=left)
                    except queue.Empty:
                        break
                    if isinstance(m, grpc.RpcError):
                        raise RuntimeError(f"config stream: {m.code().name}: {m.details()}")
                    topic, data = m
                    self.say(f"Received message '{data}' on topic '{topic}' with Qos 1")
                    log.writerow([datetime.now(timezone.utc).isoformat(), topic, data])
                    f.flush()
                    if not set_done and topic == f"/devices/{device_id}/config":
                        # The current config arrived: the subscription is
                        # live, so a change made now is delivered.
                        set_done = True
                        self.admin.call("POST", f"{device}:modifyCloudToDeviceConfig", {
                            "binaryData": base64.b64encode(a.set_config.encode()).decode()})
            finally:
                for s in streams:
                    s.cancel()
        self.say(f"Detaching: /devices/{device_id}/detach")
        self.say("Finished.\n")

    def publish(self, registry_id: str, gateway: str, device: str, gateway_id: str, device_id: str) -> None:
        a = self.args
        self.say("Publishing messages demo")
        self.say(f"Publishing: {a.states} messages")
        self.say(f"Attaching: /devices/{device_id}/attach")
        self.say("Waiting for device to attach.")
        # One request at a time: the next is sent once the previous is
        # acknowledged (the hub answers each once the bridge PUBACKed it).
        outbox: queue.Queue = queue.Queue()

        def requests():
            while (req := outbox.get()) is not None:
                yield req

        acks = self.hub.PublishState(requests())
        try:
            for i in range(1, a.states + 1):
                payload = f"{registry_id}/{gateway_id}-{device_id}-payload-{i}"
                self.say(f"Publishing message {i}/{a.states}: '{payload}' to /devices/{device_id}/state")
                outbox.put(hub_pb2.PublishStateRequest(gateway=gateway, device_id=device_id, data=payload.encode()))
                try:
                    next(acks)
                except StopIteration:
                    raise RuntimeError(f"state {i} not acknowledged: the stream ended") from None
                except grpc.RpcError as err:
                    raise RuntimeError(f"state {i} not acknowledged: {err.code().name}: {err.details()}") from None
                if i < a.states:
                    time.sleep(a.state_interval)
            outbox.put(None)
            for _ in acks:  # the hub ends the stream once it detached
                pass
        finally:
            outbox.put(None)
            acks.cancel()
        self.say(f"Detaching: /devices/{device_id}/detach")
        self.say("Finished.\n")

        states = self.admin.call("GET", f"{device}/states").get("deviceStates", [])
        self.say("You can read the state messages for your device with:")
        token_file = os.path.join(a.data_dir, "admin.token")
        self.say(f"    grpcurl -plaintext -H \"authorization: Bearer $(cat {token_file})\" -d "
                 f"'{{\"name\": \"{device}\"}}' {a.admin_addr} google.cloud.iot.v1.DeviceManager/ListDeviceStates")
        if states:
            newest = base64.b64decode(states[0].get("binaryData", "")).decode(errors="replace")
            self.say(f"ListDeviceStates: {len(states)} states kept, the newest '{newest}'\n")

    def cleanup(self, registry, registry_id, gateway, device, gateway_id, device_id) -> None:
        """Clean up whatever happened before, as the sample's finally does."""
        try:
            self.admin.call("POST", f"{registry}:unbindDeviceFromGateway",
                            {"gatewayId": gateway_id, "deviceId": device_id})
            self.say("Device unbound: {}")
        except (AdminError, OSError):
            pass
        for name in (device, gateway):
            try:
                self.admin.call("DELETE", name)
                self.say("Delete device")
            except (AdminError, OSError):
                pass
        try:
            self.admin.call("DELETE", registry)
            self.say("Delete registry")
        except (AdminError, OSError) as err:
            self.say(f"Could not delete registry {registry_id}: {err}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    token = args.token
    if not token:
        path = os.path.join(args.data_dir, "admin.token")
        try:
            token = open(path).read().strip()
        except OSError as err:
            print(f"gateway_demo: no admin token: {err} (give --token, or --data-dir of the running "
                  "passerelle serve)", file=sys.stderr)
            return 2
    demo = Demo(args, token)
    try:
        demo.run()
    except grpc.RpcError as err:
        print(f"gateway_demo: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except (AdminError, RuntimeError, OSError) as err:
        print(f"gateway_demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        demo.channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
