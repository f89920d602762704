from warden.api.server.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchCreateEntryRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_types_pb2.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_types_pb2.Entry, _Mapping]]] = ...) -> None: ...

class BatchCreateEntryResponse(_message.Message):
    __slots__ = ("results",)
    class Result(_message.Message):
        __slots__ = ("status", "entry")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        ENTRY_FIELD_NUMBER: _ClassVar[int]
        status: _types_pb2.Status
        entry: _types_pb2.Entry
        def __init__(self, status: _Optional[_Union[_types_pb2.Status, _Mapping]] = ..., entry: _Optional[_Union[_types_pb2.Entry, _Mapping]] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchCreateEntryResponse.Result]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchCreateEntryResponse.Result, _Mapping]]] = ...) -> None: ...

class GetEntryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class EntryFilter(_message.Message):
    __slots__ = ("by_spiffe_id", "by_parent_id", "by_selectors", "selector_match", "by_owner", "by_hint", "by_federates_with")
    BY_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    BY_PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    BY_SELECTORS_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_MATCH_FIELD_NUMBER: _ClassVar[int]
    BY_OWNER_FIELD_NUMBER: _ClassVar[int]
    BY_HINT_FIELD_NUMBER: _ClassVar[int]
    BY_FEDERATES_WITH_FIELD_NUMBER: _ClassVar[int]
    by_spiffe_id: str
    by_parent_id: str
    by_selectors: _containers.RepeatedCompositeFieldContainer[_types_pb2.Selector]
    selector_match: str
    by_owner: str
    by_hint: str
    by_federates_with: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, by_spiffe_id: _Optional[str] = ..., by_parent_id: _Optional[str] = ..., by_selectors: _Optional[_Iterable[_Union[_types_pb2.Selector, _Mapping]]] = ..., selector_match: _Optional[str] = ..., by_owner: _Optional[str] = ..., by_hint: _Optional[str] = ..., by_federates_with: _Optional[_Iterable[str]] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: EntryFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[EntryFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_types_pb2.Entry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_types_pb2.Entry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CountEntriesRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: EntryFilter
    def __init__(self, filter: _Optional[_Union[EntryFilter, _Mapping]] = ...) -> None: ...

class CountEntriesResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class BatchUpdateEntryRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_types_pb2.Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_types_pb2.Entry, _Mapping]]] = ...) -> None: ...

class BatchUpdateEntryResponse(_message.Message):
    __slots__ = ("results",)
    class Result(_message.Message):
        __slots__ = ("status", "entry")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        ENTRY_FIELD_NUMBER: _ClassVar[int]
        status: _types_pb2.Status
        entry: _types_pb2.Entry
        def __init__(self, status: _Optional[_Union[_types_pb2.Status, _Mapping]] = ..., entry: _Optional[_Union[_types_pb2.Entry, _Mapping]] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchUpdateEntryResponse.Result]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchUpdateEntryResponse.Result, _Mapping]]] = ...) -> None: ...

class BatchDeleteEntryRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchDeleteEntryResponse(_message.Message):
    __slots__ = ("results",)
    class Result(_message.Message):
        __slots__ = ("status", "id")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        ID_FIELD_NUMBER: _ClassVar[int]
        status: _types_pb2.Status
        id: str
        def __init__(self, status: _Optional[_Union[_types_pb2.Status, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchDeleteEntryResponse.Result]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchDeleteEntryResponse.Result, _Mapping]]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("by_attestation_type", "by_banned", "by_selectors", "page_size", "page_token")
    BY_ATTESTATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    BY_BANNED_FIELD_NUMBER: _ClassVar[int]
    BY_SELECTORS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    by_attestation_type: str
    by_banned: str
    by_selectors: _containers.RepeatedCompositeFieldContainer[_types_pb2.Selector]
    page_size: int
    page_token: str
    def __init__(self, by_attestation_type: _Optional[str] = ..., by_banned: _Optional[str] = ..., by_selectors: _Optional[_Iterable[_Union[_types_pb2.Selector, _Mapping]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_types_pb2.Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[_types_pb2.Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("spiffe_id",)
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    def __init__(self, spiffe_id: _Optional[str] = ...) -> None: ...

class CountAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountAgentsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class EvictAgentRequest(_message.Message):
    __slots__ = ("spiffe_id",)
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    def __init__(self, spiffe_id: _Optional[str] = ...) -> None: ...

class EvictAgentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BanAgentRequest(_message.Message):
    __slots__ = ("spiffe_id",)
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    def __init__(self, spiffe_id: _Optional[str] = ...) -> None: ...

class BanAgentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateJoinTokenRequest(_message.Message):
    __slots__ = ("ttl", "alias_spiffe_id", "owner")
    TTL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ttl: int
    alias_spiffe_id: str
    owner: str
    def __init__(self, ttl: _Optional[int] = ..., alias_spiffe_id: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class JoinToken(_message.Message):
    __slots__ = ("value", "expires_at", "owner", "alias_entry_id")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ALIAS_ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    value: str
    expires_at: int
    owner: str
    alias_entry_id: str
    def __init__(self, value: _Optional[str] = ..., expires_at: _Optional[int] = ..., owner: _Optional[str] = ..., alias_entry_id: _Optional[str] = ...) -> None: ...

class GetBundleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MintX509SVIDRequest(_message.Message):
    __slots__ = ("spiffe_id", "csr", "ttl", "dns_names")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    DNS_NAMES_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    csr: bytes
    ttl: int
    dns_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spiffe_id: _Optional[str] = ..., csr: _Optional[bytes] = ..., ttl: _Optional[int] = ..., dns_names: _Optional[_Iterable[str]] = ...) -> None: ...

class MintX509SVIDResponse(_message.Message):
    __slots__ = ("svid",)
    SVID_FIELD_NUMBER: _ClassVar[int]
    svid: _types_pb2.X509SVID
    def __init__(self, svid: _Optional[_Union[_types_pb2.X509SVID, _Mapping]] = ...) -> None: ...

class MintJWTSVIDRequest(_message.Message):
    __slots__ = ("spiffe_id", "audience", "ttl")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    audience: _containers.RepeatedScalarFieldContainer[str]
    ttl: int
    def __init__(self, spiffe_id: _Optional[str] = ..., audience: _Optional[_Iterable[str]] = ..., ttl: _Optional[int] = ...) -> None: ...

class MintJWTSVIDResponse(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: int
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class VerifyAuditLogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditLogResponse(_message.Message):
    __slots__ = ("ok", "records", "problem", "first_bad_sequence")
    OK_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    records: int
    problem: str
    first_bad_sequence: int
    def __init__(self, ok: _Optional[bool] = ..., records: _Optional[int] = ..., problem: _Optional[str] = ..., first_bad_sequence: _Optional[int] = ...) -> None: ...

class ListAuditRecordsRequest(_message.Message):
    __slots__ = ("since", "until", "action", "limit")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since: int
    until: int
    action: str
    limit: int
    def __init__(self, since: _Optional[int] = ..., until: _Optional[int] = ..., action: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("sequence", "time", "actor", "action", "subject", "details_json", "server_id", "hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: int
    actor: str
    action: str
    subject: str
    details_json: str
    server_id: str
    hash: str
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., details_json: _Optional[str] = ..., server_id: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("live", "ready", "trust_domain", "server_id", "version", "entries", "agents", "detail")
    LIVE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    live: bool
    ready: bool
    trust_domain: str
    server_id: str
    version: str
    entries: int
    agents: int
    detail: str
    def __init__(self, live: _Optional[bool] = ..., ready: _Optional[bool] = ..., trust_domain: _Optional[str] = ..., server_id: _Optional[str] = ..., version: _Optional[str] = ..., entries: _Optional[int] = ..., agents: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
