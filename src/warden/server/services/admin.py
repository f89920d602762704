"""The admin services: entries, agents and join tokens, bundles, minting, audit log, status."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc

from warden import __version__
from warden.api.server.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from warden.server.auth import abort, require_admin
from warden.server.checkpoints import verify_checkpoints
from warden.server.convert import agent_message, entry_message, entry_spec, from_seconds, seconds
from warden.store.errors import (
    AgentBanned,
    AlreadyExists,
    InvalidInput,
    NotFound,
    RevisionConflict,
    StoreError,
)
from warden.store.models import SelectorMatch

if TYPE_CHECKING:
    from warden.server.app import WardenServer

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 5000
# Most audit records one ListAuditRecords call returns.
MAX_AUDIT_RECORDS = 10_000


def status_for(error: Exception) -> types_pb2.Status:
    """Return the per-item status of a batch call for a datastore error."""
    return types_pb2.Status(code=grpc_code(error).value[0], message=str(error))


def grpc_code(error: Exception) -> grpc.StatusCode:
    if isinstance(error, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, AlreadyExists):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(error, InvalidInput | ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, RevisionConflict):
        return grpc.StatusCode.ABORTED
    if isinstance(error, AgentBanned):
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.INTERNAL


OK = types_pb2.Status(code=0, message="OK")


class Entries(admin_pb2_grpc.EntriesServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def BatchCreateEntry(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        datastore = self._server.datastore
        results = []
        created_ids = []
        for message in request.entries:
            try:
                self._server.check_entry_ttls(message)
                entry = await self._server.run(
                    datastore.create_entry,
                    entry_spec(message),
                    actor=actor,
                    entry_id=message.id or None,
                )
            except (StoreError, ValueError) as error:
                results.append(
                    admin_pb2.BatchCreateEntryResponse.Result(
                        status=status_for(error), entry=message
                    )
                )
                continue
            created_ids.append(entry.id)
            results.append(
                admin_pb2.BatchCreateEntryResponse.Result(status=OK, entry=entry_message(entry))
            )
        await self._server.entries_written(created_ids)
        return admin_pb2.BatchCreateEntryResponse(results=results)

    async def GetEntry(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        try:
            entry = await self._server.run(self._server.datastore.get_entry, request.id)
        except NotFound as error:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        return entry_message(entry)

    async def _list(self, entry_filter: Any, after_id: str | None, limit: int | None) -> list[Any]:
        arguments: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if entry_filter.by_spiffe_id:
            arguments["spiffe_id"] = entry_filter.by_spiffe_id
        if entry_filter.by_parent_id:
            arguments["parent_id"] = entry_filter.by_parent_id
        if entry_filter.by_owner:
            arguments["owner"] = entry_filter.by_owner
        if entry_filter.by_selectors:
            arguments["selectors"] = [f"{s.type}:{s.value}" for s in entry_filter.by_selectors]
            arguments["match"] = SelectorMatch(entry_filter.selector_match or "exact")
        if entry_filter.by_federates_with:
            arguments["federates_with"] = entry_filter.by_federates_with[0]
        entries = await self._server.run(self._server.datastore.list_entries, **arguments)
        if entry_filter.by_hint:
            entries = [e for e in entries if e.hint == entry_filter.by_hint]
        for extra in entry_filter.by_federates_with[1:]:
            entries = [e for e in entries if extra in e.federates_with]
        return list(entries)

    async def ListEntries(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        page_size = min(request.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        try:
            entries = await self._list(request.filter, request.page_token or None, page_size)
        except (StoreError, ValueError) as error:
            await abort(context, grpc_code(error), str(error))
        next_token = entries[-1].id if len(entries) == page_size else ""
        return admin_pb2.ListEntriesResponse(
            entries=[entry_message(e) for e in entries], next_page_token=next_token
        )

    async def CountEntries(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        entry_filter = request.filter
        unfiltered = not any(
            (
                entry_filter.by_spiffe_id,
                entry_filter.by_parent_id,
                entry_filter.by_owner,
                entry_filter.by_selectors,
                entry_filter.by_hint,
                entry_filter.by_federates_with,
            )
        )
        if unfiltered:
            count = await self._server.run(self._server.datastore.count_entries)
        else:
            try:
                count = len(await self._list(entry_filter, None, None))
            except (StoreError, ValueError) as error:
                await abort(context, grpc_code(error), str(error))
        return admin_pb2.CountEntriesResponse(count=count)

    async def BatchUpdateEntry(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        results = []
        updated = []
        for message in request.entries:
            try:
                if not message.id:
                    raise InvalidInput(
                        f"entry {message.spiffe_id}: the id of the entry to update is required"
                    )
                self._server.check_entry_ttls(message)
                entry = await self._server.run(
                    self._server.datastore.update_entry,
                    message.id,
                    entry_spec(message),
                    actor=actor,
                )
            except (StoreError, ValueError) as error:
                results.append(
                    admin_pb2.BatchUpdateEntryResponse.Result(
                        status=status_for(error), entry=message
                    )
                )
                continue
            updated.append(entry.id)
            results.append(
                admin_pb2.BatchUpdateEntryResponse.Result(status=OK, entry=entry_message(entry))
            )
        await self._server.entries_written(updated)
        return admin_pb2.BatchUpdateEntryResponse(results=results)

    async def BatchDeleteEntry(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        results = []
        deleted = []
        for entry_id in request.ids:
            try:
                entry = await self._server.run(
                    self._server.datastore.delete_entry, entry_id, actor=actor
                )
            except StoreError as error:
                results.append(
                    admin_pb2.BatchDeleteEntryResponse.Result(status=status_for(error), id=entry_id)
                )
                continue
            deleted.append(entry_id)
            await self._server.entry_deleted(entry, actor)
            results.append(admin_pb2.BatchDeleteEntryResponse.Result(status=OK, id=entry_id))
        await self._server.entries_written(deleted)
        return admin_pb2.BatchDeleteEntryResponse(results=results)


class Agents(admin_pb2_grpc.AgentsServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def ListAgents(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        page_size = min(request.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        banned = {"true": True, "false": False}.get(request.by_banned)
        nodes = await self._server.run(
            self._server.datastore.list_attested_nodes,
            attestation_type=request.by_attestation_type or None,
            banned=banned,
            after_id=request.page_token or None,
            limit=page_size,
        )
        if request.by_selectors:
            wanted = {f"{s.type}:{s.value}" for s in request.by_selectors}
            nodes = [n for n in nodes if wanted <= {f"{s.type}:{s.value}" for s in n.selectors}]
        next_token = nodes[-1].spiffe_id if len(nodes) == page_size else ""
        return admin_pb2.ListAgentsResponse(
            agents=[agent_message(n) for n in nodes], next_page_token=next_token
        )

    async def GetAgent(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        try:
            node = await self._server.run(
                self._server.datastore.get_attested_node, request.spiffe_id
            )
        except NotFound as error:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        return agent_message(node)

    async def CountAgents(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        count = await self._server.run(self._server.datastore.count_attested_nodes)
        return admin_pb2.CountAgentsResponse(count=count)

    async def EvictAgent(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        try:
            await self._server.run(
                self._server.datastore.evict_node, request.spiffe_id, actor=actor
            )
        except NotFound as error:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        self._server.agent_removed(
            request.spiffe_id,
            f"agent {request.spiffe_id} was evicted by {actor}; it must attest again",
        )
        return admin_pb2.EvictAgentResponse()

    async def BanAgent(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        try:
            await self._server.run(self._server.datastore.ban_node, request.spiffe_id, actor=actor)
        except NotFound as error:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        self._server.agent_removed(
            request.spiffe_id,
            f"agent {request.spiffe_id} was banned by {actor}; an operator must evict it before it can attest again",
        )
        return admin_pb2.BanAgentResponse()

    async def CreateJoinToken(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        ttl = timedelta(seconds=request.ttl) if request.ttl else self._server.options.join_token_ttl
        try:
            return await self._server.create_join_token(
                owner=request.owner, actor=actor, ttl=ttl, alias=request.alias_spiffe_id or None
            )
        except (StoreError, ValueError) as error:
            await abort(context, grpc_code(error), str(error))


class Bundles(admin_pb2_grpc.BundlesServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def GetBundle(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        return self._server.bundle_message()


class SVIDs(admin_pb2_grpc.SVIDsServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def MintX509SVID(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        try:
            svid = await self._server.signing.mint_x509(
                request.spiffe_id, request.csr, request.ttl, list(request.dns_names), actor
            )
        except ValueError as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return admin_pb2.MintX509SVIDResponse(svid=svid)

    async def MintJWTSVID(self, request: Any, context: Any) -> Any:
        actor = await require_admin(self._server, context)
        try:
            token, expires_at = await self._server.signing.mint_jwt(
                request.spiffe_id, list(request.audience), request.ttl, actor
            )
        except ValueError as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return admin_pb2.MintJWTSVIDResponse(token=token, expires_at=expires_at)


class AuditLog(admin_pb2_grpc.AuditLogServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def VerifyAuditLog(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        await self._server.audit.flush()
        result = await self._server.run(self._server.datastore.verify_audit_log)
        problem = result.problem or ""
        ok = result.ok
        if ok:
            await self._server.run(self._server.checkpoints.write, self._server.clock())
            checked = await self._server.run(
                verify_checkpoints, self._server.options.data_dir, self._server.datastore
            )
            ok, problem = checked.ok, checked.problem
        return admin_pb2.VerifyAuditLogResponse(
            ok=ok,
            records=result.length,
            problem=problem,
            first_bad_sequence=result.first_bad_seq or 0,
        )

    async def ListAuditRecords(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await require_admin(self._server, context)
        await self._server.audit.flush()
        limit = min(request.limit, MAX_AUDIT_RECORDS) if request.limit else MAX_AUDIT_RECORDS
        try:
            since, until = from_seconds(request.since), from_seconds(request.until)
        except ValueError as error:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))

        def collect() -> list[Any]:
            # The newest `limit` records, read newest first and returned in chain order.
            newest = list(
                self._server.datastore.iter_audit(
                    since=since,
                    until=until,
                    action=request.action or None,
                    limit=limit,
                    newest_first=True,
                )
            )
            return newest[::-1]

        for record in await self._server.run(collect):
            yield admin_pb2.AuditRecord(
                sequence=record.seq,
                time=seconds(record.time),
                actor=record.actor,
                action=record.action,
                subject=record.subject,
                details_json=json.dumps(dict(record.details), sort_keys=True, default=str),
                server_id=record.server_id,
                hash=record.record_hash,
            )


class ServerStatus(admin_pb2_grpc.ServerStatusServicer):
    def __init__(self, server: WardenServer) -> None:
        self._server = server

    async def GetStatus(self, request: Any, context: Any) -> Any:
        await require_admin(self._server, context)
        live, ready, detail = await self._server.health_check()
        return admin_pb2.GetStatusResponse(
            live=live,
            ready=ready,
            trust_domain=self._server.options.trust_domain.name,
            server_id=self._server.server_id,
            version=__version__,
            entries=len(self._server.cache),
            agents=await self._server.run(self._server.datastore.count_attested_nodes),
            detail=detail,
        )


def add_admin_services(grpc_server: grpc.aio.Server, server: WardenServer) -> None:
    admin_pb2_grpc.add_EntriesServicer_to_server(Entries(server), grpc_server)
    admin_pb2_grpc.add_AgentsServicer_to_server(Agents(server), grpc_server)
    admin_pb2_grpc.add_BundlesServicer_to_server(Bundles(server), grpc_server)
    admin_pb2_grpc.add_SVIDsServicer_to_server(SVIDs(server), grpc_server)
    admin_pb2_grpc.add_AuditLogServicer_to_server(AuditLog(server), grpc_server)
    admin_pb2_grpc.add_ServerStatusServicer_to_server(ServerStatus(server), grpc_server)


__all__ = ["add_admin_services", "asyncio"]
