"""The Python client against a real passerelle serve: an error's status,
a cancelled stream, and a reconnect after the hub restarts.

    PASSERELLE_BIN=bin/passerelle python3 -m unittest discover -s clients/python/tests -v
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import unittest
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import grpc  # noqa: E402

from passerelle.hub import connect, error_info, error_reason  # noqa: E402
from passerelle.hub.v1 import errors_pb2, hub_pb2, hub_pb2_grpc  # noqa: E402
from serve import Serve, TLSHub, wait_for  # noqa: E402

PARENT = "projects/p1/locations/us-central1"
TIMEOUT = 30  # seconds, for every call: a test never hangs


class HubTest(unittest.TestCase):
    serve: Serve

    @classmethod
    def setUpClass(cls) -> None:
        cls.serve = Serve()
        cls.serve.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.serve.close()

    def setUp(self) -> None:
        self.channel = connect(self.serve.hub_addr, token=self.serve.token)
        self.addCleanup(self.channel.close)
        self.hub = hub_pb2_grpc.HubStub(self.channel)

    def gateway_with_device(self, registry_id: str, **registry: Any) -> tuple[str, str]:
        """A registry (with the fields given), a gateway made by the hub, and a
        device created and bound through Attach: returns the gateway's name and
        the device id."""
        self.serve.admin("POST", f"{PARENT}/registries", {"id": registry_id, **registry})
        registry = f"{PARENT}/registries/{registry_id}"
        gw = self.hub.CreateGateway(hub_pb2.CreateGatewayRequest(parent=registry, gateway_id="gw-1"), timeout=TIMEOUT)
        self.assertEqual(gw.gateway.name, f"{registry}/devices/gw-1")
        done = threading.Event()

        def requests():
            yield hub_pb2.AttachRequest(gateway=gw.gateway.name, device_id="dev-1",
                                        create_if_missing=True, bind_if_needed=True)
            done.wait(TIMEOUT)

        attach = self.hub.Attach(requests(), timeout=TIMEOUT)
        first = next(attach)
        self.assertEqual(first.WhichOneof("event"), "attached")
        self.assertTrue(first.attached.created)
        self.assertTrue(first.attached.bound)
        done.set()
        attach.cancel()
        return gw.gateway.name, "dev-1"

    def attached_devices(self, gateway: str) -> list[str]:
        pool = self.hub.GetPool(hub_pb2.GetPoolRequest(), timeout=TIMEOUT)
        return [d.device_id for c in pool.connections if c.gateway == gateway for d in c.attached_devices]

    def test_error_status(self) -> None:
        """A failed call carries the hub's status code and message."""
        no_token = connect(self.serve.hub_addr)
        self.addCleanup(no_token.close)
        with self.assertRaises(grpc.RpcError) as cm:
            hub_pb2_grpc.HubStub(no_token).ListGateways(hub_pb2.ListGatewaysRequest(), timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(cm.exception.details(), "missing 'authorization: Bearer <token>'")
        self.assertEqual(error_reason(cm.exception), errors_pb2.ErrorReason.Name(errors_pb2.TOKEN_MISSING))

        with self.assertRaises(grpc.RpcError) as cm:
            self.hub.CreateGateway(hub_pb2.CreateGatewayRequest(parent=f"{PARENT}/registries/nowhere", gateway_id="gw"),
                                   timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("The format of 'gateway_id' is invalid", cm.exception.details())
        info = error_info(cm.exception)
        self.assertEqual((info.reason, info.metadata["field"]), ("INVALID_FIELD", "gateway_id"))

        unknown = f"{PARENT}/registries/nowhere/devices/gw-1"
        with self.assertRaises(grpc.RpcError) as cm:
            self.hub.PublishEvent(hub_pb2.PublishEventRequest(gateway=unknown, device_id="dev-1", data=b"x"),
                                  timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("the hub holds no key for this gateway", cm.exception.details())
        self.assertIn("create it with CreateGateway", cm.exception.details())
        self.assertEqual(error_reason(cm.exception), "GATEWAY_KEY_MISSING")

    def test_error_reasons_of_devices(self) -> None:
        """A device the bridge refuses: its reason on PublishEvent, and on a
        PublishEvents stream, which goes on after refusing it."""
        gateway, device_id = self.gateway_with_device(
            "py-reasons", eventNotificationConfigs=[{"pubsubTopicName": "projects/p1/topics/py-reasons"}])
        self.serve.admin("POST", f"{PARENT}/registries/py-reasons/devices", {"id": "unbound"})
        with self.assertRaises(grpc.RpcError) as cm:
            self.hub.PublishEvent(hub_pb2.PublishEventRequest(gateway=gateway, device_id="unbound", data=b"x"),
                                  timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(error_reason(cm.exception), "DEVICE_NOT_BOUND")

        answers = list(self.hub.PublishEvents(iter([
            hub_pb2.PublishEventsRequest(gateway=gateway, device_id="unbound", data=b"x"),
            hub_pb2.PublishEventsRequest(device_id=device_id, data=b"stored"),
        ]), timeout=TIMEOUT))
        self.assertEqual([a.index for a in answers], [0, 1])
        self.assertEqual(answers[0].refused.reason, errors_pb2.DEVICE_NOT_BOUND)
        self.assertFalse(answers[1].HasField("refused"))

    def test_tls(self) -> None:
        """Over TLS the hub's certificate is checked against the CA given,
        and the token goes along."""
        hub = TLSHub(self.serve)
        self.addCleanup(hub.close)
        with open(hub.ca, "rb") as f:
            ca = f.read()
        channel = connect(hub.addr, token=self.serve.token, root_certificates=ca)
        self.addCleanup(channel.close)
        gateways = hub_pb2_grpc.HubStub(channel).ListGateways(hub_pb2.ListGatewaysRequest(), timeout=TIMEOUT,
                                                              wait_for_ready=True)
        self.assertEqual(list(gateways.gateways), [])

        no_token = connect(hub.addr, root_certificates=ca)
        self.addCleanup(no_token.close)
        with self.assertRaises(grpc.RpcError) as cm:
            hub_pb2_grpc.HubStub(no_token).ListGateways(hub_pb2.ListGatewaysRequest(), timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

        # The system's roots do not know passerelle serve's development CA.
        untrusted = connect(hub.addr, token=self.serve.token, tls=True)
        self.addCleanup(untrusted.close)
        with self.assertRaises(grpc.RpcError) as cm:
            hub_pb2_grpc.HubStub(untrusted).ListGateways(hub_pb2.ListGatewaysRequest(), timeout=TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_cancelled_stream(self) -> None:
        """Cancelling a stream ends it with CANCELLED here and releases the
        device in the hub."""
        gateway, device_id = self.gateway_with_device("py-cancel")
        stream = self.hub.SubscribeConfig(hub_pb2.SubscribeConfigRequest(gateway=gateway, device_id=device_id),
                                          timeout=TIMEOUT)
        first = next(stream)  # the current config: the stream holds the device attached
        self.assertEqual(first.version, 1)
        self.assertEqual(self.attached_devices(gateway), [device_id])

        stream.cancel()
        with self.assertRaises(grpc.RpcError) as cm:
            next(stream)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.CANCELLED)
        wait_for("the hub to detach the device of the cancelled stream",
                 lambda: self.attached_devices(gateway) == [])

    def test_reconnect_after_hub_restart(self) -> None:
        """A channel made before the hub restarts works after it: a stream
        the restart broke ends with UNAVAILABLE, and calls and streams on
        the same channel go through again."""
        gateway, device_id = self.gateway_with_device("py-restart")
        configs: queue.Queue = queue.Queue()
        stream = self.hub.SubscribeConfig(hub_pb2.SubscribeConfigRequest(gateway=gateway, device_id=device_id),
                                          timeout=TIMEOUT)

        def read():
            try:
                for c in stream:
                    configs.put(c)
            except grpc.RpcError as err:
                configs.put(err)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        self.assertIsInstance(configs.get(timeout=TIMEOUT), hub_pb2.SubscribeConfigResponse)

        self.serve.restart()
        ended = configs.get(timeout=TIMEOUT)
        reader.join(TIMEOUT)
        self.assertIsInstance(ended, grpc.RpcError)
        self.assertEqual(ended.code(), grpc.StatusCode.UNAVAILABLE, ended.details())

        # The same channel reconnects: the first call waits for it.
        gateways = self.hub.ListGateways(hub_pb2.ListGatewaysRequest(), timeout=TIMEOUT, wait_for_ready=True)
        self.assertIn(gateway, [g.name for g in gateways.gateways])
        again = self.hub.SubscribeConfig(hub_pb2.SubscribeConfigRequest(gateway=gateway, device_id=device_id),
                                         timeout=TIMEOUT)
        self.assertEqual(next(again).version, 1)
        again.cancel()
        acks = self.hub.PublishState(iter([hub_pb2.PublishStateRequest(
            gateway=gateway, device_id=device_id, data=b"after-restart-%d" % time.time_ns())]), timeout=TIMEOUT)
        self.assertEqual([a.index for a in acks], [0])


if __name__ == "__main__":
    unittest.main()
