from warden.api.server.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttestationData(_message.Message):
    __slots__ = ("type", "payload")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    type: str
    payload: bytes
    def __init__(self, type: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class AttestAgentRequest(_message.Message):
    __slots__ = ("params", "challenge_response")
    class Params(_message.Message):
        __slots__ = ("data", "csr")
        DATA_FIELD_NUMBER: _ClassVar[int]
        CSR_FIELD_NUMBER: _ClassVar[int]
        data: AttestationData
        csr: bytes
        def __init__(self, data: _Optional[_Union[AttestationData, _Mapping]] = ..., csr: _Optional[bytes] = ...) -> None: ...
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    params: AttestAgentRequest.Params
    challenge_response: bytes
    def __init__(self, params: _Optional[_Union[AttestAgentRequest.Params, _Mapping]] = ..., challenge_response: _Optional[bytes] = ...) -> None: ...

class AttestAgentResponse(_message.Message):
    __slots__ = ("result", "challenge")
    class Result(_message.Message):
        __slots__ = ("svid", "bundle", "reattestable")
        SVID_FIELD_NUMBER: _ClassVar[int]
        BUNDLE_FIELD_NUMBER: _ClassVar[int]
        REATTESTABLE_FIELD_NUMBER: _ClassVar[int]
        svid: _types_pb2.X509SVID
        bundle: _types_pb2.Bundle
        reattestable: bool
        def __init__(self, svid: _Optional[_Union[_types_pb2.X509SVID, _Mapping]] = ..., bundle: _Optional[_Union[_types_pb2.Bundle, _Mapping]] = ..., reattestable: _Optional[bool] = ...) -> None: ...
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    result: AttestAgentResponse.Result
    challenge: bytes
    def __init__(self, result: _Optional[_Union[AttestAgentResponse.Result, _Mapping]] = ..., challenge: _Optional[bytes] = ...) -> None: ...

class RenewAgentRequest(_message.Message):
    __slots__ = ("csr",)
    CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    def __init__(self, csr: _Optional[bytes] = ...) -> None: ...

class RenewAgentResponse(_message.Message):
    __slots__ = ("svid",)
    SVID_FIELD_NUMBER: _ClassVar[int]
    svid: _types_pb2.X509SVID
    def __init__(self, svid: _Optional[_Union[_types_pb2.X509SVID, _Mapping]] = ...) -> None: ...

class NewX509SVIDParams(_message.Message):
    __slots__ = ("entry_id", "csr")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    csr: bytes
    def __init__(self, entry_id: _Optional[str] = ..., csr: _Optional[bytes] = ...) -> None: ...

class BatchNewX509SVIDRequest(_message.Message):
    __slots__ = ("params",)
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    params: _containers.RepeatedCompositeFieldContainer[NewX509SVIDParams]
    def __init__(self, params: _Optional[_Iterable[_Union[NewX509SVIDParams, _Mapping]]] = ...) -> None: ...

class BatchNewX509SVIDResponse(_message.Message):
    __slots__ = ("results",)
    class Result(_message.Message):
        __slots__ = ("status", "svid", "entry_id")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        SVID_FIELD_NUMBER: _ClassVar[int]
        ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
        status: _types_pb2.Status
        svid: _types_pb2.X509SVID
        entry_id: str
        def __init__(self, status: _Optional[_Union[_types_pb2.Status, _Mapping]] = ..., svid: _Optional[_Union[_types_pb2.X509SVID, _Mapping]] = ..., entry_id: _Optional[str] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchNewX509SVIDResponse.Result]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchNewX509SVIDResponse.Result, _Mapping]]] = ...) -> None: ...

class NewJWTSVIDRequest(_message.Message):
    __slots__ = ("entry_id", "audience")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    audience: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entry_id: _Optional[str] = ..., audience: _Optional[_Iterable[str]] = ...) -> None: ...

class NewJWTSVIDResponse(_message.Message):
    __slots__ = ("token", "spiffe_id", "issued_at", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    spiffe_id: str
    issued_at: int
    expires_at: int
    def __init__(self, token: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., issued_at: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class SyncEntriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncEntriesResponse(_message.Message):
    __slots__ = ("full", "upserts", "deleted_entry_ids", "bundle", "federated_bundles", "more")
    FULL_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    DELETED_ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    FEDERATED_BUNDLES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    full: bool
    upserts: _containers.RepeatedCompositeFieldContainer[_types_pb2.Entry]
    deleted_entry_ids: _containers.RepeatedScalarFieldContainer[str]
    bundle: _types_pb2.Bundle
    federated_bundles: _containers.RepeatedCompositeFieldContainer[_types_pb2.Bundle]
    more: bool
    def __init__(self, full: _Optional[bool] = ..., upserts: _Optional[_Iterable[_Union[_types_pb2.Entry, _Mapping]]] = ..., deleted_entry_ids: _Optional[_Iterable[str]] = ..., bundle: _Optional[_Union[_types_pb2.Bundle, _Mapping]] = ..., federated_bundles: _Optional[_Iterable[_Union[_types_pb2.Bundle, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("entry_id", "delivered_at")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    delivered_at: int
    def __init__(self, entry_id: _Optional[str] = ..., delivered_at: _Optional[int] = ...) -> None: ...

class ReportDeliveriesRequest(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class ReportDeliveriesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
