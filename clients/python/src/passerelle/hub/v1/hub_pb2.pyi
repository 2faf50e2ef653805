from google.protobuf import timestamp_pb2 as _timestamp_pb2
from passerelle.hub.v1 import errors_pb2 as _errors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ALGORITHM_ES256: Algorithm
ALGORITHM_RS256: Algorithm
ALGORITHM_UNSPECIFIED: Algorithm
CONNECTION_STATE_CONNECTED: ConnectionState
CONNECTION_STATE_CONNECTING: ConnectionState
CONNECTION_STATE_IDLE: ConnectionState
CONNECTION_STATE_RECONNECTING: ConnectionState
CONNECTION_STATE_UNSPECIFIED: ConnectionState
DESCRIPTOR: _descriptor.FileDescriptor
GATEWAY_AUTH_METHOD_ASSOCIATION_AND_DEVICE_AUTH_TOKEN: GatewayAuthMethod
GATEWAY_AUTH_METHOD_ASSOCIATION_ONLY: GatewayAuthMethod
GATEWAY_AUTH_METHOD_DEVICE_AUTH_TOKEN_ONLY: GatewayAuthMethod
GATEWAY_AUTH_METHOD_UNSPECIFIED: GatewayAuthMethod
KEY_SOURCE_GATEWAYS_FILE: KeySource
KEY_SOURCE_KEY_STORE: KeySource
KEY_SOURCE_UNSPECIFIED: KeySource

class AttachRequest(_message.Message):
    __slots__ = ["authorization", "bind_if_needed", "create_if_missing", "device_id", "gateway"]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    BIND_IF_NEEDED_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    bind_if_needed: bool
    create_if_missing: bool
    device_id: str
    gateway: str
    def __init__(self, gateway: _Optional[str] = ..., device_id: _Optional[str] = ..., authorization: _Optional[str] = ..., create_if_missing: bool = ..., bind_if_needed: bool = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ["attached", "error", "reattached"]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REATTACHED_FIELD_NUMBER: _ClassVar[int]
    attached: Attached
    error: GatewayError
    reattached: Reattached
    def __init__(self, attached: _Optional[_Union[Attached, _Mapping]] = ..., reattached: _Optional[_Union[Reattached, _Mapping]] = ..., error: _Optional[_Union[GatewayError, _Mapping]] = ...) -> None: ...

class Attached(_message.Message):
    __slots__ = ["bound", "created", "device"]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    bound: bool
    created: bool
    device: str
    def __init__(self, device: _Optional[str] = ..., created: bool = ..., bound: bool = ...) -> None: ...

class AttachedDevice(_message.Message):
    __slots__ = ["attached", "device_id", "holders"]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    attached: bool
    device_id: str
    holders: int
    def __init__(self, device_id: _Optional[str] = ..., holders: _Optional[int] = ..., attached: bool = ...) -> None: ...

class CreateGatewayRequest(_message.Message):
    __slots__ = ["algorithm", "gateway_auth_method", "gateway_id", "parent"]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_AUTH_METHOD_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    algorithm: Algorithm
    gateway_auth_method: GatewayAuthMethod
    gateway_id: str
    parent: str
    def __init__(self, parent: _Optional[str] = ..., gateway_id: _Optional[str] = ..., algorithm: _Optional[_Union[Algorithm, str]] = ..., gateway_auth_method: _Optional[_Union[GatewayAuthMethod, str]] = ...) -> None: ...

class CreateGatewayResponse(_message.Message):
    __slots__ = ["gateway"]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    gateway: Gateway
    def __init__(self, gateway: _Optional[_Union[Gateway, _Mapping]] = ...) -> None: ...

class EventRefusal(_message.Message):
    __slots__ = ["code", "message", "reason"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: _errors_pb2.ErrorReason
    def __init__(self, reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Gateway(_message.Message):
    __slots__ = ["algorithm", "attached_device_count", "key_source", "name", "state"]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    algorithm: Algorithm
    attached_device_count: int
    key_source: KeySource
    name: str
    state: ConnectionState
    def __init__(self, name: _Optional[str] = ..., algorithm: _Optional[_Union[Algorithm, str]] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., state: _Optional[_Union[ConnectionState, str]] = ..., attached_device_count: _Optional[int] = ...) -> None: ...

class GatewayConnection(_message.Message):
    __slots__ = ["attached_devices", "connect_time", "gateway", "holders", "reconnects", "state", "token_expire_time"]
    ATTACHED_DEVICES_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    attached_devices: _containers.RepeatedCompositeFieldContainer[AttachedDevice]
    connect_time: _timestamp_pb2.Timestamp
    gateway: str
    holders: int
    reconnects: int
    state: ConnectionState
    token_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, gateway: _Optional[str] = ..., state: _Optional[_Union[ConnectionState, str]] = ..., reconnects: _Optional[int] = ..., connect_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., token_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., attached_devices: _Optional[_Iterable[_Union[AttachedDevice, _Mapping]]] = ..., holders: _Optional[int] = ...) -> None: ...

class GatewayError(_message.Message):
    __slots__ = ["description", "device_id", "error_type", "packet_id", "topic"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    description: str
    device_id: str
    error_type: str
    packet_id: int
    topic: str
    def __init__(self, error_type: _Optional[str] = ..., description: _Optional[str] = ..., device_id: _Optional[str] = ..., topic: _Optional[str] = ..., packet_id: _Optional[int] = ...) -> None: ...

class GetPoolRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetPoolResponse(_message.Message):
    __slots__ = ["connections"]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    connections: _containers.RepeatedCompositeFieldContainer[GatewayConnection]
    def __init__(self, connections: _Optional[_Iterable[_Union[GatewayConnection, _Mapping]]] = ...) -> None: ...

class ListGatewaysRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListGatewaysResponse(_message.Message):
    __slots__ = ["gateways"]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    gateways: _containers.RepeatedCompositeFieldContainer[Gateway]
    def __init__(self, gateways: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ...) -> None: ...

class PublishEventRequest(_message.Message):
    __slots__ = ["authorization", "data", "device_id", "gateway", "sub_folder"]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    SUB_FOLDER_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    data: bytes
    device_id: str
    gateway: str
    sub_folder: str
    def __init__(self, gateway: _Optional[str] = ..., device_id: _Optional[str] = ..., authorization: _Optional[str] = ..., sub_folder: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishEventResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class PublishEventsRequest(_message.Message):
    __slots__ = ["authorization", "data", "device_id", "gateway", "sub_folder"]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    SUB_FOLDER_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    data: bytes
    device_id: str
    gateway: str
    sub_folder: str
    def __init__(self, gateway: _Optional[str] = ..., device_id: _Optional[str] = ..., authorization: _Optional[str] = ..., sub_folder: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishEventsResponse(_message.Message):
    __slots__ = ["index", "refused"]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    index: int
    refused: EventRefusal
    def __init__(self, index: _Optional[int] = ..., refused: _Optional[_Union[EventRefusal, _Mapping]] = ...) -> None: ...

class PublishStateRequest(_message.Message):
    __slots__ = ["authorization", "data", "device_id", "gateway"]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    data: bytes
    device_id: str
    gateway: str
    def __init__(self, gateway: _Optional[str] = ..., device_id: _Optional[str] = ..., authorization: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PublishStateResponse(_message.Message):
    __slots__ = ["index"]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class Reattached(_message.Message):
    __slots__ = ["reconnects"]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    reconnects: int
    def __init__(self, reconnects: _Optional[int] = ...) -> None: ...

class SubscribeCommandsRequest(_message.Message):
    __slots__ = ["authorization", "device_id", "gateway"]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    device_id: str
    gateway: str
    def __init__(self, gateway: _Optional[str] = ..., device_id: _Optional[str] = ..., authorization: _Optional[str] = ...) -> None: ...

class SubscribeCommandsResponse(_message.Message):
    __slots__ = ["data", "receive_time", "sub_folder"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUB_FOLDER_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    receive_time: _timestamp_pb2.Timestamp
    sub_folder: str
    def __init__(self, sub_folder: _Optional[str] = ..., data: _Optional[bytes] = ..., receive_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubscribeConfigRequest(_message.Message):
    __slots__ = ["authorization", "device_id", "gateway"]
    AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    authorization: str
    device_id: str
    gateway: str
    def __init__(self, gateway: _Optional[str] = ..., device_id: _Optional[str] = ..., authorization: _Optional[str] = ...) -> None: ...

class SubscribeConfigResponse(_message.Message):
    __slots__ = ["data", "receive_time", "version"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    receive_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, version: _Optional[int] = ..., data: _Optional[bytes] = ..., receive_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class GatewayAuthMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class KeySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ConnectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
