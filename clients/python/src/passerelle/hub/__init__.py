"""Client for Passerelle's hub API, passerelle.hub.v1.Hub.

The generated code is in :mod:`passerelle.hub.v1` (``hub_pb2`` for the
messages, with ``.pyi`` stubs, and ``hub_pb2_grpc`` for ``HubStub``). This
module opens a gRPC channel to the hub that sends a token with every call
and retries as :data:`RETRY_POLICY` says::

    from passerelle.hub import connect
    from passerelle.hub.v1 import hub_pb2, hub_pb2_grpc

    channel = connect("127.0.0.1:8090", token=open("passerelle-data/admin.token").read().strip())
    hub = hub_pb2_grpc.HubStub(channel)
    print(hub.ListGateways(hub_pb2.ListGatewaysRequest(), timeout=10))
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Sequence, Tuple

import grpc

__all__ = ["ERROR_DOMAIN", "RETRY_POLICY", "SERVICE", "SERVICE_CONFIG", "connect", "error_info", "error_reason"]

#: The domain of the google.rpc.ErrorInfo every hub error carries; its
#: reason is the name of a passerelle.hub.v1.ErrorReason value
#: (``errors_pb2.ErrorReason.Name(...)``).
ERROR_DOMAIN = "hub.passerelle.dev"

#: The hub's service name, as gRPC and the service config name it.
SERVICE = "passerelle.hub.v1.Hub"

#: How a call that fails with UNAVAILABLE (the hub unreachable or
#: restarting, or its gateway connection down) is tried again: up to 5
#: attempts in all, waiting a random time up to 0.2 s, 0.4 s, 0.8 s, 1.6 s
#: between them (gRPC's retry policy). gRPC retries a stream only until its
#: first response; a stream that breaks later ends with UNAVAILABLE and is
#: the caller's to open again. CreateGateway is not retried: a second
#: attempt after a lost answer would report ALREADY_EXISTS. Repeating
#: PublishEvent or PublishState may deliver a payload twice, as MQTT QoS 1
#: does.
RETRY_POLICY: dict = {
    "maxAttempts": 5,
    "initialBackoff": "0.2s",
    "maxBackoff": "5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

#: The gRPC service config :func:`connect` gives the channel.
SERVICE_CONFIG: str = json.dumps(
    {
        "methodConfig": [
            {"name": [{"service": SERVICE}], "retryPolicy": RETRY_POLICY},
            {"name": [{"service": SERVICE, "method": "CreateGateway"}]},
        ]
    }
)

# How long the channel waits before it tries to reach the hub again after a
# failed attempt: from 0.2 s, at most 5 s (gRPC's own default grows to 120 s,
# which would leave a client idle long after a restarted hub is back).
_RECONNECT_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


def connect(
    target: str,
    *,
    token: Optional[str] = None,
    tls: bool = False,
    root_certificates: Optional[bytes] = None,
    options: Sequence[Tuple[str, Any]] = (),
) -> grpc.Channel:
    """Open a channel to the hub at ``target`` (``host:port``).

    token: sent with every call as ``authorization: Bearer <token>`` (a
    token of the hub's tokens file, or the admin token of ``passerelle
    serve``); None sends none (a hub started with --insecure-no-auth).

    tls: use TLS, checking the hub's certificate against
    ``root_certificates`` (PEM bytes), or the system's roots when None.
    Giving ``root_certificates`` implies TLS. Without TLS the channel is
    plaintext, as ``passerelle serve``'s hub is by default.

    options: more gRPC channel arguments; they win over this function's.

    The channel connects lazily and reconnects by itself; close it with
    ``channel.close()`` (or use it as a context manager).
    """
    opts = [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        *_RECONNECT_OPTIONS,
    ]
    given = {name for name, _ in options}
    opts = [o for o in opts if o[0] not in given] + list(options)
    if tls or root_certificates is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        if token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
        return grpc.secure_channel(target, creds, options=opts)
    channel = grpc.insecure_channel(target, options=opts)
    if token:
        # gRPC's access-token credentials insist on TLS; on plaintext the
        # token goes as metadata through an interceptor.
        channel = grpc.intercept_channel(channel, _BearerInterceptor(token))
    return channel


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: Sequence[Tuple[str, str]]):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call's metadata."""

    def __init__(self, token: str):
        self._header = ("authorization", "Bearer " + token)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        metadata.append(self._header)
        return _ClientCallDetails(details, metadata)

    def intercept_unary_unary(self, continuation: Callable, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def error_info(err: grpc.RpcError) -> Any:
    """The hub's ``google.rpc.ErrorInfo`` of a failed call, or None.

    The hub sends a ``google.rpc.Status`` in the ``grpc-status-details-bin``
    trailer; its details hold the ErrorInfo (reason, domain, metadata such
    as ``field`` or ``limit``). An error gRPC made itself (a deadline, a
    cancel, a lost connection) has none.
    """
    from google.rpc import error_details_pb2, status_pb2

    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        st = status_pb2.Status.FromString(value)
        for detail in st.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return info
    return None


def error_reason(err: grpc.RpcError) -> Optional[str]:
    """The hub's reason for a failed call (an ErrorReason name such as
    ``"DEVICE_NOT_BOUND"``), or None when the hub gave none."""
    info = error_info(err)
    return info.reason if info is not None else None
