"""The `unix` workload attestor: user, groups and binary of the calling process.

Selectors, in SPIRE's forms: `unix:uid:<n>`, `unix:user:<name>`, `unix:gid:<n>`,
`unix:group:<name>`, `unix:supplementary_gid:<n>`, `unix:supplementary_group:<name>`, and
with `discover_workload_path = true` also `unix:path:<binary>` and `unix:sha256:<hex>`.

The uid and gid are the kernel's peer credentials of the connection, which the caller cannot
forge. Names come from the agent's user and group databases and are left out when an id has
no name there.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import logging
import os
import pwd
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from warden.agent.attestor.base import (
    AttestationError,
    PluginConfig,
    parse_plugin_data,
)
from warden.agent.caller import Caller, Executable
from warden.agent.proc import DEFAULT_PROC_ROOT, ProcessGoneError, ProcFS
from warden.spiffe import Selector

log = logging.getLogger(__name__)

NAME = "unix"
_HASH_CHUNK_BYTES = 1024 * 1024
# Digests are cached by (device, inode, size, mtime, ctime), so a binary that many callers
# run is hashed once; this bounds the cache. The ctime is part of the key because the owner of
# a file can rewrite it and set its mtime back, but every write or utime() moves the ctime.
_DIGEST_CACHE_SIZE = 256
_HASH_THREADS = 2
_DigestKey = tuple[int, int, int, int, int]


class UnixConfig(PluginConfig):
    """`plugin_data` of `WorkloadAttestor "unix"`."""

    #: Add `unix:path` and `unix:sha256`; needs permission to read `/proc/<pid>/exe`.
    discover_workload_path: bool = False
    #: Largest binary, in bytes, that is hashed for `unix:sha256`: 0 means no limit, a
    #: negative value never hashes. A larger binary fails attestation.
    workload_size_limit: int = 0
    #: The procfs tree to read (Warden addition, for tests and containers).
    proc_root: str = str(DEFAULT_PROC_ROOT)


class UnixAttestor:
    """Selectors from the caller's peer credentials and, optionally, its binary."""

    name = NAME

    def __init__(self, config: UnixConfig | None = None) -> None:
        self.config = config or UnixConfig()
        self.needs_executable = self.config.discover_workload_path
        self._proc = ProcFS(self.config.proc_root)
        self._digests: OrderedDict[_DigestKey, str] = OrderedDict()
        # Hashing has threads of its own, because a binary can take minutes to hash (a
        # sparse file of many gigabytes is still a valid ELF). Such callers must not hold up
        # the default executor, on which the agent generates the keys of rotated SVIDs.
        self._hash_pool = ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="warden-sha256")
        # Callers of one binary share the hash in progress instead of each starting one.
        self._hashing: dict[_DigestKey, asyncio.Future[str]] = {}

    @classmethod
    def from_plugin_data(cls, plugin_data: Mapping[str, Any]) -> UnixAttestor:
        return cls(parse_plugin_data(NAME, UnixConfig, plugin_data))

    async def attest(self, caller: Caller) -> list[Selector]:
        selectors = [Selector(NAME, f"uid:{caller.uid}"), Selector(NAME, f"gid:{caller.gid}")]
        user = _user_name(caller.uid)
        if user is not None:
            selectors.append(Selector(NAME, f"user:{user}"))
        group = _group_name(caller.gid)
        if group is not None:
            selectors.append(Selector(NAME, f"group:{group}"))

        try:
            credentials = self._proc.credentials(caller.pid)
        except ProcessGoneError as error:
            raise AttestationError(f"unix attestor: {error}") from None
        for gid in credentials.supplementary_gids:
            selectors.append(Selector(NAME, f"supplementary_gid:{gid}"))
            name = _group_name(gid)
            if name is not None:
                selectors.append(Selector(NAME, f"supplementary_group:{name}"))

        if self.config.discover_workload_path:
            selectors.extend(await self._binary_selectors(caller))
        return selectors

    async def _binary_selectors(self, caller: Caller) -> list[Selector]:
        if caller.closed:
            # Its descriptor is closed, and the number may already name another file.
            raise AttestationError(f"unix attestor: caller pid {caller.pid} disconnected")
        executable = caller.executable
        opened_here = False
        if executable is None:
            executable = self._open_executable(caller.pid)
            opened_here = True
        try:
            selectors = [Selector(NAME, f"path:{executable.path}")]
            if self.config.workload_size_limit >= 0:
                digest = await self._sha256(executable)
                selectors.append(Selector(NAME, f"sha256:{digest}"))
            return selectors
        finally:
            if opened_here:
                os.close(executable.descriptor)

    def _open_executable(self, pid: int) -> Executable:
        try:
            descriptor = self._proc.open_executable(pid)
            path = self._proc.executable_path(pid)
        except ProcessGoneError as error:
            raise AttestationError(f"unix attestor: {error}") from None
        status = os.fstat(descriptor)
        return Executable(path, descriptor, status.st_dev, status.st_ino)

    async def _sha256(self, executable: Executable) -> str:
        status = os.fstat(executable.descriptor)
        limit = self.config.workload_size_limit
        if limit > 0 and status.st_size > limit:
            raise AttestationError(
                f"unix attestor: binary {executable.path} is {status.st_size} bytes, over "
                f"workload_size_limit {limit}; raise the limit or set it to -1 to skip hashing"
            )

        key = (
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
        cached = self._digests.get(key)
        if cached is not None:
            self._digests.move_to_end(key)
            return cached

        pending = self._hashing.get(key)
        if pending is None:
            # The hash reads its own duplicate of the descriptor: the caller's descriptor is
            # closed when its connection ends, and the number may then name another file.
            descriptor = os.dup(executable.descriptor)
            pending = asyncio.get_running_loop().run_in_executor(
                self._hash_pool, _hash_and_close, descriptor
            )
            self._hashing[key] = pending
            pending.add_done_callback(lambda done: self._hashed(key, done, descriptor))
        digest = await asyncio.shield(pending)

        self._digests[key] = digest
        if len(self._digests) > _DIGEST_CACHE_SIZE:
            self._digests.popitem(last=False)
        return digest

    def _hashed(self, key: _DigestKey, done: asyncio.Future[str], descriptor: int) -> None:
        self._hashing.pop(key, None)
        if done.cancelled():
            # Cancelled before a thread took it, so `_hash_and_close` never ran.
            os.close(descriptor)

    async def close(self) -> None:
        self._hash_pool.shutdown(wait=False, cancel_futures=True)


def _hash_and_close(descriptor: int) -> str:
    try:
        return _hash_descriptor(descriptor)
    finally:
        os.close(descriptor)


def _hash_descriptor(descriptor: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while True:
        chunk = os.pread(descriptor, _HASH_CHUNK_BYTES, offset)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)
        offset += len(chunk)


# User and group names are looked up on every call, and the name service reads /etc/passwd
# and /etc/group each time; names are kept for this long, so a renamed account shows its new
# name within a minute.
NAME_CACHE_SECONDS = 60.0
_names: dict[tuple[str, int], tuple[str | None, float]] = {}


def _cached_name(kind: str, number: int) -> str | None:
    now = time.monotonic()
    cached = _names.get((kind, number))
    if cached is not None and now - cached[1] < NAME_CACHE_SECONDS:
        return cached[0]
    try:
        name: str | None = (
            pwd.getpwuid(number).pw_name if kind == "user" else grp.getgrgid(number).gr_name
        )
    except KeyError:
        name = None
    if len(_names) > 10_000:
        _names.clear()
    _names[(kind, number)] = (name, now)
    return name


def _user_name(uid: int) -> str | None:
    return _cached_name("user", uid)


def _group_name(gid: int) -> str | None:
    return _cached_name("group", gid)
