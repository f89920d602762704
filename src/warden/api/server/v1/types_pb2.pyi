from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Selector(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("id", "spiffe_id", "parent_id", "selectors", "x509_svid_ttl", "jwt_svid_ttl", "dns_names", "federates_with", "admin", "downstream", "hint", "expires_at", "owner", "description", "created_at", "updated_at", "revision", "last_delivered_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    SELECTORS_FIELD_NUMBER: _ClassVar[int]
    X509_SVID_TTL_FIELD_NUMBER: _ClassVar[int]
    JWT_SVID_TTL_FIELD_NUMBER: _ClassVar[int]
    DNS_NAMES_FIELD_NUMBER: _ClassVar[int]
    FEDERATES_WITH_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LAST_DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    spiffe_id: str
    parent_id: str
    selectors: _containers.RepeatedCompositeFieldContainer[Selector]
    x509_svid_ttl: int
    jwt_svid_ttl: int
    dns_names: _containers.RepeatedScalarFieldContainer[str]
    federates_with: _containers.RepeatedScalarFieldContainer[str]
    admin: bool
    downstream: bool
    hint: str
    expires_at: int
    owner: str
    description: str
    created_at: int
    updated_at: int
    revision: int
    last_delivered_at: int
    def __init__(self, id: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., parent_id: _Optional[str] = ..., selectors: _Optional[_Iterable[_Union[Selector, _Mapping]]] = ..., x509_svid_ttl: _Optional[int] = ..., jwt_svid_ttl: _Optional[int] = ..., dns_names: _Optional[_Iterable[str]] = ..., federates_with: _Optional[_Iterable[str]] = ..., admin: _Optional[bool] = ..., downstream: _Optional[bool] = ..., hint: _Optional[str] = ..., expires_at: _Optional[int] = ..., owner: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., revision: _Optional[int] = ..., last_delivered_at: _Optional[int] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("spiffe_id", "attestation_type", "serial", "svid_expires_at", "selectors", "banned", "owner", "created_at", "last_seen_at", "can_reattest")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    SVID_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SELECTORS_FIELD_NUMBER: _ClassVar[int]
    BANNED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    CAN_REATTEST_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    attestation_type: str
    serial: str
    svid_expires_at: int
    selectors: _containers.RepeatedCompositeFieldContainer[Selector]
    banned: bool
    owner: str
    created_at: int
    last_seen_at: int
    can_reattest: bool
    def __init__(self, spiffe_id: _Optional[str] = ..., attestation_type: _Optional[str] = ..., serial: _Optional[str] = ..., svid_expires_at: _Optional[int] = ..., selectors: _Optional[_Iterable[_Union[Selector, _Mapping]]] = ..., banned: _Optional[bool] = ..., owner: _Optional[str] = ..., created_at: _Optional[int] = ..., last_seen_at: _Optional[int] = ..., can_reattest: _Optional[bool] = ...) -> None: ...

class Bundle(_message.Message):
    __slots__ = ("trust_domain", "spiffe_json", "sequence")
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_JSON_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    trust_domain: str
    spiffe_json: bytes
    sequence: int
    def __init__(self, trust_domain: _Optional[str] = ..., spiffe_json: _Optional[bytes] = ..., sequence: _Optional[int] = ...) -> None: ...

class X509SVID(_message.Message):
    __slots__ = ("spiffe_id", "cert_chain", "expires_at")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CERT_CHAIN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    cert_chain: _containers.RepeatedScalarFieldContainer[bytes]
    expires_at: int
    def __init__(self, spiffe_id: _Optional[str] = ..., cert_chain: _Optional[_Iterable[bytes]] = ..., expires_at: _Optional[int] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
