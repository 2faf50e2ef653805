"""The retry policy of passerelle.hub.connect, against an in-process gRPC
server on 127.0.0.1 that answers UNAVAILABLE and counts the attempts."""

from __future__ import annotations

import os
import sys
import threading
import unittest
from concurrent import futures

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import grpc  # noqa: E402

from passerelle.hub import RETRY_POLICY, connect  # noqa: E402
from passerelle.hub.v1 import hub_pb2, hub_pb2_grpc  # noqa: E402


class Unavailable(hub_pb2_grpc.HubServicer):
    """Fails every call with the code given, counting the calls by method."""

    def __init__(self, code: grpc.StatusCode):
        self.code = code
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def _fail(self, method: str, context: grpc.ServicerContext):
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
        context.abort(self.code, "try again")

    def ListGateways(self, request, context):
        self._fail("ListGateways", context)

    def CreateGateway(self, request, context):
        self._fail("CreateGateway", context)

    def PublishEvent(self, request, context):
        self._fail("PublishEvent", context)


class RetryTest(unittest.TestCase):
    def serve(self, code: grpc.StatusCode) -> tuple[Unavailable, hub_pb2_grpc.HubStub]:
        servicer = Unavailable(code)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        hub_pb2_grpc.add_HubServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.addCleanup(server.stop, None)
        channel = connect(f"127.0.0.1:{port}", token="t")
        self.addCleanup(channel.close)
        return servicer, hub_pb2_grpc.HubStub(channel)

    def test_unavailable_is_retried(self) -> None:
        servicer, hub = self.serve(grpc.StatusCode.UNAVAILABLE)
        for call, request in ((hub.ListGateways, hub_pb2.ListGatewaysRequest()),
                              (hub.PublishEvent, hub_pb2.PublishEventRequest())):
            with self.assertRaises(grpc.RpcError) as cm:
                call(request, timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(servicer.calls["ListGateways"], RETRY_POLICY["maxAttempts"])
        self.assertEqual(servicer.calls["PublishEvent"], RETRY_POLICY["maxAttempts"])

    def test_create_gateway_and_other_codes_are_not(self) -> None:
        servicer, hub = self.serve(grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(grpc.RpcError):
            hub.CreateGateway(hub_pb2.CreateGatewayRequest(), timeout=30)
        self.assertEqual(servicer.calls["CreateGateway"], 1)

        servicer, hub = self.serve(grpc.StatusCode.FAILED_PRECONDITION)
        with self.assertRaises(grpc.RpcError) as cm:
            hub.ListGateways(hub_pb2.ListGatewaysRequest(), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(servicer.calls["ListGateways"], 1)


if __name__ == "__main__":
    unittest.main()
