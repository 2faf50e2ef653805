from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

BRIDGE_UNAVAILABLE: ErrorReason
CALL_CANCELLED: ErrorReason
DEADLINE_EXCEEDED: ErrorReason
DESCRIPTOR: _descriptor.FileDescriptor
DEVICE_BLOCKED: ErrorReason
DEVICE_NOT_ATTACHED: ErrorReason
DEVICE_NOT_BOUND: ErrorReason
DEVICE_NOT_FOUND: ErrorReason
DEVICE_TOKEN_REFUSED: ErrorReason
ERROR_REASON_UNSPECIFIED: ErrorReason
GATEWAY_ATTACHMENT_ERROR: ErrorReason
GATEWAY_DELETED: ErrorReason
GATEWAY_ERROR: ErrorReason
GATEWAY_KEY_EXISTS: ErrorReason
GATEWAY_KEY_MISSING: ErrorReason
GATEWAY_MOVED: ErrorReason
GATEWAY_REFUSED: ErrorReason
HUB_CLOSING: ErrorReason
HUB_DRAINING: ErrorReason
INTERNAL_ERROR: ErrorReason
INVALID_FIELD: ErrorReason
MESSAGE_DROPPED: ErrorReason
PAYLOAD_TOO_LARGE: ErrorReason
PROVISIONING_DISABLED: ErrorReason
PROVISIONING_FAILED: ErrorReason
RATE_LIMITED: ErrorReason
ROLE_INSUFFICIENT: ErrorReason
SLOW_CONSUMER: ErrorReason
STREAM_TARGET_CHANGED: ErrorReason
TOKEN_MISSING: ErrorReason
TOKEN_UNKNOWN: ErrorReason
TOO_MANY_DEVICES: ErrorReason

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
