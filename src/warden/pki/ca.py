"""The server's CA: its X.509 CA, JWT-SVID keys and federation token keys, and their rotation.

One `CertificateAuthority` per server. For each kind of authority it keeps a current one
that signs. From half of that one's lifetime on, it also keeps a next one that is already
published in the trust bundle (`warden.pki.rotation` has the thresholds). Retired
authorities stay in the bundle until they expire, so everything they signed keeps verifying.

Persistence: private keys live in the key manager, the journal (which keys and certificates
are current, next or old) in the `JournalStore` under the server id, and the public parts in
the trust domain's shared bundle record in the `BundleStore`. A restarted server reads its
journal and resumes with the same CA; several servers sharing one datastore each add their
own authorities to the one bundle.

Signing reads an immutable snapshot of the current authorities, so it takes no lock and is
safe from any number of threads. `start` and `rotate` serialize on a lock.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from warden.pki.bundlerecord import BundleRecord, FederationKey
from warden.pki.errors import CAError, JournalError, KeyManagerError, PkiError
from warden.pki.journal import (
    AuthorityKind,
    AuthorityStatus,
    JournalEntry,
    decode_journal,
    encode_journal,
)
from warden.pki.keys import KeyManager, KeyType, PrivateKey
from warden.pki.rotation import (
    activation_time,
    default_refresh_hint,
    max_svid_ttl,
    preparation_time,
)
from warden.pki.stores import BundleStore, JournalStore
from warden.pki.upstream import UpstreamAuthority
from warden.spiffe import (
    DEFAULT_CA_TTL,
    DEFAULT_JWT_SVID_TTL,
    DEFAULT_X509_SVID_TTL,
    X509CA,
    Bundle,
    JwtAuthority,
    JwtSigner,
    JwtSvidError,
    SpiffeError,
    SpiffeId,
    TrustDomain,
    build_intermediate_ca,
    build_self_signed_ca,
    build_x509_svid,
    load_csr,
    mint_jwt_svid,
)
from warden.spiffe._time import require_aware, to_unix_seconds
from warden.spiffe.jwtsvid import algorithm_for_key
from warden.spiffe.x509ca import BACKDATE

log = logging.getLogger(__name__)

#: Lifetime of a federation token when the caller gives none.
DEFAULT_FEDERATION_TOKEN_TTL = timedelta(minutes=5)

_KIND_NAMES = {
    AuthorityKind.X509_CA: "X.509 CA",
    AuthorityKind.JWT_KEY: "JWT-SVID signing key",
    AuthorityKind.FEDERATION_KEY: "federation token signing key",
}


@dataclass(frozen=True)
class CASettings:
    """Settings the CA takes from the server's configuration, with SPIRE's defaults.

    Only `trust_domain` is required. `server_id` names this server's journal in a shared
    datastore and prefixes its key ids. `federation_key_type` None turns federation token
    keys off.
    """

    trust_domain: TrustDomain
    server_id: str = "server"
    ca_ttl: timedelta = DEFAULT_CA_TTL
    x509_svid_ttl: timedelta = DEFAULT_X509_SVID_TTL
    jwt_svid_ttl: timedelta = DEFAULT_JWT_SVID_TTL
    federation_token_ttl: timedelta = DEFAULT_FEDERATION_TOKEN_TTL
    ca_key_type: KeyType = KeyType.EC_P256
    jwt_key_type: KeyType = KeyType.EC_P256
    federation_key_type: KeyType | None = KeyType.RSA_2048
    ca_subject: x509.Name | None = None
    jwt_issuer: str | None = None
    bundle_refresh_hint: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.server_id or not self.server_id.strip():
            raise CAError("server_id must not be empty; it names the server's CA journal")
        for name in ("ca_ttl", "x509_svid_ttl", "jwt_svid_ttl", "federation_token_ttl"):
            value: timedelta = getattr(self, name)
            if value <= timedelta(0):
                raise CAError(f"invalid {name} {value}: it must be positive")

    @property
    def refresh_hint(self) -> timedelta:
        return self.bundle_refresh_hint or default_refresh_hint(self.ca_ttl)


@dataclass(frozen=True)
class _Authority:
    """An authority that can sign: its journal entry and its ready-to-use signer."""

    entry: JournalEntry
    x509_ca: X509CA | None = None
    signer: JwtSigner | None = None

    def with_status(self, status: AuthorityStatus) -> _Authority:
        return _Authority(self.entry.with_status(status), self.x509_ca, self.signer)


@dataclass(frozen=True)
class _State:
    """An immutable snapshot of the CA's authorities; replaced whole on every change."""

    current: Mapping[AuthorityKind, _Authority] = field(default_factory=dict)
    next: Mapping[AuthorityKind, _Authority] = field(default_factory=dict)
    old: tuple[JournalEntry, ...] = ()

    def entries(self) -> list[JournalEntry]:
        return [
            *(a.entry for a in self.current.values()),
            *(a.entry for a in self.next.values()),
            *self.old,
        ]


def _key_id_prefix(server_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", server_id)[:40]
    return safe if safe[:1].isalnum() else f"s{safe}"


class CertificateAuthority:
    """The CA of one server; see the module documentation."""

    def __init__(
        self,
        settings: CASettings,
        key_manager: KeyManager,
        journal_store: JournalStore,
        bundle_store: BundleStore,
        upstream: UpstreamAuthority | None = None,
    ) -> None:
        self.settings = settings
        self._key_manager = key_manager
        self._journal_store = journal_store
        self._bundle_store = bundle_store
        self._upstream = upstream
        self._state = _State()
        self._lock = threading.Lock()
        self._key_prefix = f"{_key_id_prefix(settings.server_id)}."
        longest = max_svid_ttl(settings.ca_ttl)
        for name in ("x509_svid_ttl", "jwt_svid_ttl"):
            ttl: timedelta = getattr(settings, name)
            if ttl > longest:
                log.warning(
                    f"{name} {ttl} exceeds {longest}, a sixth of ca_ttl {settings.ca_ttl}; "
                    "SVIDs signed shortly before a CA rotation will live shorter than that",
                    extra={"trust_domain": str(settings.trust_domain)},
                )

    @property
    def trust_domain(self) -> TrustDomain:
        return self.settings.trust_domain

    @property
    def kinds(self) -> tuple[AuthorityKind, ...]:
        """The kinds of authority this CA keeps."""
        if self.settings.federation_key_type is None:
            return (AuthorityKind.X509_CA, AuthorityKind.JWT_KEY)
        return (AuthorityKind.X509_CA, AuthorityKind.JWT_KEY, AuthorityKind.FEDERATION_KEY)

    # Start and rotation.

    def start(self, now: datetime) -> None:
        """Resume from the journal, or create the authorities; publish them in the bundle.

        Raises CAError when no usable X.509 CA or JWT key can be loaded or created.
        """
        now = require_aware(now)
        with self._lock:
            data = self._journal_store.load_journal(self.settings.server_id)
            try:
                entries = decode_journal(data) if data is not None else []
            except JournalError as error:
                raise CAError(
                    f"cannot read the CA journal of server {self.settings.server_id!r}: "
                    f"{error}; restore it from a backup, or delete it to start a new CA"
                ) from None
            self._state = self._restore(entries, now)
            self._rotate_locked(now, publish=True)
            self._delete_orphan_keys()
        current = self._state.current[AuthorityKind.X509_CA].entry
        log.info(
            "CA started",
            extra={
                "trust_domain": str(self.trust_domain),
                "key_id": current.key_id,
                "serial": _serial(current),
                "not_after": current.not_after.isoformat(),
            },
        )

    def rotate(self, now: datetime) -> bool:
        """Prepare, activate and retire authorities as their lifetimes require.

        Call it every few seconds; SPIRE checks every 10 s. Returns True when an authority
        changed. Raises CAError when the new state cannot be created, published or saved.
        The CA then keeps signing with its previous authorities, and the next call retries.
        """
        now = require_aware(now)
        with self._lock:
            return self._rotate_locked(now, publish=False)

    def _rotate_locked(self, now: datetime, publish: bool) -> bool:
        state = self._state
        current = dict(state.current)
        upcoming = dict(state.next)
        old = list(state.old)
        created: list[_Authority] = []
        changes: list[tuple[str, _Authority]] = []

        # Datastores and upstream authorities raise errors of their own types, so any
        # exception aborts the step: keys created for it are deleted and the CA keeps the
        # state it had.
        try:
            for kind in self.kinds:
                # Activating the next authority may immediately call for preparing another
                # (after a long downtime), so a kind takes up to three steps.
                for _ in range(3):
                    change = self._step(kind, current, upcoming, old, created, now)
                    if change is None:
                        break
                    changes.append(change)

            old = [entry for entry in old if not _expired(entry, now)]
            new_state = _State(current, upcoming, tuple(old))
            if not changes and old == list(state.old):
                if publish or self._bundle_is_stale(new_state, now):
                    self._publish(new_state, now)
                return False

            self._publish(new_state, now)
            self._journal_store.save_journal(
                self.settings.server_id, encode_journal(new_state.entries())
            )
        except Exception as error:
            for authority in created:
                self._forget_key(authority.entry.key_id)
            raise CAError(
                f"CA rotation for {self.trust_domain} failed: {error}; the CA keeps its "
                "previous state and retries at the next rotation"
            ) from error

        self._state = new_state
        live_keys = {a.entry.key_id for a in (*current.values(), *upcoming.values())}
        for entry in state.entries():
            if entry.key_id not in live_keys and entry.status is not AuthorityStatus.OLD:
                self._forget_key(entry.key_id)
        for action, authority in changes:
            entry = authority.entry
            log.info(
                f"{_KIND_NAMES[entry.kind]} {action}",
                extra={
                    "trust_domain": str(self.trust_domain),
                    "key_id": entry.key_id,
                    "serial": _serial(entry),
                    "not_after": entry.not_after.isoformat(),
                },
            )
        return True

    def _step(
        self,
        kind: AuthorityKind,
        current: dict[AuthorityKind, _Authority],
        upcoming: dict[AuthorityKind, _Authority],
        old: list[JournalEntry],
        created: list[_Authority],
        now: datetime,
    ) -> tuple[str, _Authority] | None:
        """Take one rotation step for `kind`, changing the dictionaries in place."""
        active = current.get(kind)
        prepared = upcoming.get(kind)
        if prepared is not None and now >= prepared.entry.not_after:
            old.append(prepared.entry.with_status(AuthorityStatus.OLD))
            del upcoming[kind]
            prepared = None

        if active is None or now >= active.entry.not_after:
            if active is not None:
                old.append(active.entry.with_status(AuthorityStatus.OLD))
            if prepared is not None:
                current[kind] = prepared.with_status(AuthorityStatus.ACTIVE)
                del upcoming[kind]
                return "activated", current[kind]
            authority = self._create(kind, AuthorityStatus.ACTIVE, now)
            created.append(authority)
            current[kind] = authority
            return "created", authority

        entry = active.entry
        if prepared is None and now >= preparation_time(entry.not_before, entry.not_after):
            try:
                authority = self._create(kind, AuthorityStatus.PREPARED, now)
            except (PkiError, SpiffeError) as error:
                # The current authority stays valid for a while, so a failed preparation is
                # retried at the next rotation instead of failing this one.
                log.error(
                    f"preparing the next {_KIND_NAMES[kind]} failed; retrying at the next rotation",
                    extra={"trust_domain": str(self.trust_domain), "error": str(error)},
                )
                return None
            created.append(authority)
            upcoming[kind] = authority
            return "prepared", authority

        if prepared is not None and now >= activation_time(entry.not_before, entry.not_after):
            old.append(entry.with_status(AuthorityStatus.OLD))
            current[kind] = prepared.with_status(AuthorityStatus.ACTIVE)
            del upcoming[kind]
            return "activated", current[kind]
        return None

    # Creating and restoring authorities.

    def _new_key_id(self, kind: AuthorityKind, now: datetime) -> str:
        return f"{self._key_prefix}{kind.value}.{now:%Y%m%dT%H%M%SZ}.{secrets.token_hex(4)}"

    def _key_type(self, kind: AuthorityKind) -> KeyType:
        if kind is AuthorityKind.X509_CA:
            return self.settings.ca_key_type
        if kind is AuthorityKind.JWT_KEY:
            return self.settings.jwt_key_type
        return self.settings.federation_key_type or KeyType.RSA_2048

    def _create(self, kind: AuthorityKind, status: AuthorityStatus, now: datetime) -> _Authority:
        key_id = self._new_key_id(kind, now)
        private_key = self._key_manager.generate_key(key_id, self._key_type(kind))
        try:
            if kind is AuthorityKind.X509_CA:
                return self._create_x509_ca(key_id, private_key, status, now)
            kid = secrets.token_urlsafe(24)
            # Backdated like a CA certificate, so that all kinds reach their thresholds at
            # the same rotation and the bundle changes once per step.
            entry = JournalEntry(
                kind,
                key_id,
                status,
                not_before=now - BACKDATE,
                not_after=now + self.settings.ca_ttl,
                public_key=private_key.public_key(),
                kid=kid,
            )
            return _Authority(entry, signer=JwtSigner(private_key, kid))
        except BaseException:
            self._forget_key(key_id)
            raise

    def _create_x509_ca(
        self, key_id: str, private_key: PrivateKey, status: AuthorityStatus, now: datetime
    ) -> _Authority:
        settings = self.settings
        if self._upstream is None:
            ca = build_self_signed_ca(
                private_key, settings.trust_domain, now, settings.ca_ttl, settings.ca_subject
            )
            roots: tuple[x509.Certificate, ...] = (ca.certificate,)
        else:
            signed = self._upstream.mint_x509_ca(
                private_key.public_key(),
                settings.trust_domain,
                settings.ca_ttl,
                now,
                settings.ca_subject,
            )
            ca = X509CA(signed.certificate, private_key, signed.upstream_chain)
            roots = signed.roots
        entry = JournalEntry(
            AuthorityKind.X509_CA,
            key_id,
            status,
            ca.not_before,
            ca.not_after,
            certificate=ca.certificate,
            upstream_chain=ca.upstream_chain,
            roots=roots,
        )
        return _Authority(entry, x509_ca=ca)

    def _restore(self, entries: Iterable[JournalEntry], now: datetime) -> _State:
        current: dict[AuthorityKind, _Authority] = {}
        upcoming: dict[AuthorityKind, _Authority] = {}
        old: list[JournalEntry] = []
        for entry in entries:
            if _expired(entry, now):
                continue
            slots = current if entry.status is AuthorityStatus.ACTIVE else upcoming
            if entry.status is AuthorityStatus.OLD or entry.kind in slots:
                old.append(entry.with_status(AuthorityStatus.OLD))
                continue
            try:
                slots[entry.kind] = self._load(entry)
            except (PkiError, SpiffeError) as error:
                log.warning(
                    f"cannot resume the journal's {_KIND_NAMES[entry.kind]}; replacing it",
                    extra={"key_id": entry.key_id, "error": str(error)},
                )
                old.append(entry.with_status(AuthorityStatus.OLD))
        return _State(current, upcoming, tuple(old))

    def _load(self, entry: JournalEntry) -> _Authority:
        if entry.kind not in self.kinds:
            raise CAError(f"{_KIND_NAMES[entry.kind]}s are turned off in the configuration")
        private_key = self._key_manager.get_key(entry.key_id)
        if entry.kind is AuthorityKind.X509_CA:
            if entry.certificate is None:
                raise CAError("the journal entry has no certificate")
            ca = X509CA(entry.certificate, private_key, entry.upstream_chain)
            if ca.trust_domain != self.trust_domain:
                raise CAError(
                    f"the CA belongs to trust domain {ca.trust_domain}, not {self.trust_domain}"
                )
            self_signed = entry.roots == (entry.certificate,)
            if self_signed != (self._upstream is None):
                raise CAError("the UpstreamAuthority configuration changed")
            return _Authority(entry, x509_ca=ca)
        if entry.kid is None or entry.public_key != private_key.public_key():
            raise CAError("the key in the key manager does not match the journal")
        return _Authority(entry, signer=JwtSigner(private_key, entry.kid))

    def _forget_key(self, key_id: str) -> None:
        try:
            self._key_manager.delete_key(key_id)
        except KeyManagerError as error:
            log.error(
                "deleting a retired key failed", extra={"key_id": key_id, "error": str(error)}
            )

    def _delete_orphan_keys(self) -> None:
        """Delete this server's keys that no live authority uses, left by a crash."""
        live = {a.entry.key_id for a in (*self._state.current.values(), *self._state.next.values())}
        for key_id in self._key_manager.list_keys():
            if key_id.startswith(self._key_prefix) and key_id not in live:
                log.info("deleting a key that no authority uses", extra={"key_id": key_id})
                self._forget_key(key_id)

    # The shared bundle.

    def _published_parts(
        self, state: _State, now: datetime
    ) -> tuple[list[x509.Certificate], list[JwtAuthority], list[FederationKey]]:
        roots: list[x509.Certificate] = []
        jwt_keys: list[JwtAuthority] = []
        federation: list[FederationKey] = []
        for entry in state.entries():
            if _expired(entry, now):
                continue
            if entry.kind is AuthorityKind.X509_CA:
                roots.extend(entry.roots)
            elif entry.public_key is not None and entry.kid is not None:
                if entry.kind is AuthorityKind.JWT_KEY:
                    jwt_keys.append(JwtAuthority(entry.kid, entry.public_key, entry.not_after))
                else:
                    algorithm = algorithm_for_key(entry.public_key)
                    federation.append(
                        FederationKey(entry.kid, entry.public_key, algorithm, entry.not_after)
                    )
        return roots, jwt_keys, federation

    def _publish(self, state: _State, now: datetime) -> None:
        roots, jwt_keys, federation = self._published_parts(state, now)
        trust_domain = self.trust_domain
        hint = self.settings.refresh_hint

        def mutate(data: bytes | None) -> bytes:
            record = BundleRecord.decode(trust_domain, data)
            return record.merged(roots, jwt_keys, federation, now, hint).encode()

        self._bundle_store.update_bundle(trust_domain.name, mutate)

    def _bundle_is_stale(self, state: _State, now: datetime) -> bool:
        """Tell whether the stored bundle lacks one of our authorities or has an expired one."""
        try:
            record = BundleRecord.decode(
                self.trust_domain, self._bundle_store.get_bundle(self.trust_domain.name)
            )
        except Exception:  # Unknown state: publishing again either repairs it or reports why.
            return True
        bundle = record.bundle
        roots, jwt_keys, federation = self._published_parts(state, now)
        if any(c not in bundle.x509_authorities for c in roots):
            return True
        if any(bundle.jwt_authority(a.key_id) is None for a in jwt_keys):
            return True
        if {k.kid for k in federation} - {k.kid for k in record.federation_keys}:
            return True
        return bundle.without_expired(now) != bundle or any(
            key.expires_at <= now for key in record.federation_keys
        )

    def bundle(self) -> Bundle:
        """Return the trust domain's SPIFFE bundle as stored: every server's authorities."""
        data = self._bundle_store.get_bundle(self.trust_domain.name)
        return BundleRecord.decode(self.trust_domain, data).bundle

    def federation_jwks(self, now: datetime) -> dict[str, Any]:
        """Return the unexpired federation token keys of every server as a JWK Set."""
        now = require_aware(now)
        data = self._bundle_store.get_bundle(self.trust_domain.name)
        record = BundleRecord.decode(self.trust_domain, data)
        live = tuple(key for key in record.federation_keys if key.expires_at > now)
        return BundleRecord(record.bundle, live).federation_jwks()

    def authorities(self) -> tuple[JournalEntry, ...]:
        """Return this server's authorities: current, next, then retired ones."""
        return tuple(self._state.entries())

    # Signing. Each method reads one snapshot of the state and takes no lock.

    def _active(self, kind: AuthorityKind) -> _Authority:
        authority = self._state.current.get(kind)
        if authority is None:
            if kind not in self.kinds:
                raise CAError(
                    f"{_KIND_NAMES[kind]}s are turned off; set federation_key_type to use them"
                )
            raise CAError(
                f"no active {_KIND_NAMES[kind]} for {self.trust_domain}: the CA has not "
                "started; call start() first"
            )
        return authority

    @property
    def x509_ca(self) -> X509CA:
        """The X.509 CA that signs now."""
        ca = self._active(AuthorityKind.X509_CA).x509_ca
        if ca is None:
            raise CAError("the active X.509 authority has no CA")
        return ca

    def sign_x509_svid(
        self,
        spiffe_id: SpiffeId,
        public_key: object,
        ttl: timedelta | None = None,
        dns_names: Iterable[str] = (),
        *,
        now: datetime,
    ) -> list[x509.Certificate]:
        """Sign an X509-SVID and return its chain, leaf first.

        The chain includes the server's CA and the upstream intermediates when the CA is
        signed upstream. The TTL defaults to the configured X509-SVID TTL and is capped at
        the CA's expiry. Raises X509SvidError for a bad ID, key or DNS name.
        """
        ca = self.x509_ca
        if ttl is None:
            ttl = self.settings.x509_svid_ttl
        leaf = build_x509_svid(ca, spiffe_id, public_key, now, ttl, dns_names)
        return ca.chain(leaf)

    def sign_x509_svid_from_csr(
        self,
        spiffe_id: SpiffeId,
        csr: bytes | x509.CertificateSigningRequest,
        ttl: timedelta | None = None,
        dns_names: Iterable[str] = (),
        *,
        now: datetime,
    ) -> list[x509.Certificate]:
        """Check a CSR's signature and sign an X509-SVID for its key; see `sign_x509_svid`."""
        request = load_csr(csr)
        return self.sign_x509_svid(spiffe_id, request.public_key(), ttl, dns_names, now=now)

    def sign_downstream_x509_ca(
        self, public_key: object, ttl: timedelta | None = None, *, now: datetime
    ) -> list[x509.Certificate]:
        """Sign a CA certificate for a downstream server and return its chain, CA first."""
        ca = self.x509_ca
        if ttl is None:
            ttl = self.settings.ca_ttl
        certificate = build_intermediate_ca(
            public_key, self.trust_domain, ca, now, ttl, self.settings.ca_subject
        )
        return [certificate, ca.certificate, *ca.upstream_chain]

    def sign_jwt_svid(
        self,
        spiffe_id: SpiffeId,
        audience: str | Iterable[str],
        ttl: timedelta | None = None,
        *,
        now: datetime,
    ) -> str:
        """Mint a JWT-SVID; its expiry is capped at the signing key's. Raises JwtSvidError."""
        if spiffe_id.trust_domain != self.trust_domain:
            raise JwtSvidError(
                f"cannot sign a JWT-SVID for {spiffe_id}: the CA signs for trust domain "
                f"{self.trust_domain} only"
            )
        authority = self._active(AuthorityKind.JWT_KEY)
        if authority.signer is None:
            raise CAError("the active JWT authority has no signer")
        return mint_jwt_svid(
            authority.signer,
            spiffe_id,
            audience,
            now,
            self.settings.jwt_svid_ttl if ttl is None else ttl,
            not_after=authority.entry.not_after,
            issuer=self.settings.jwt_issuer,
        )

    def sign_federation_token(
        self, claims: Mapping[str, Any], ttl: timedelta | None = None, *, now: datetime
    ) -> str:
        """Sign an OIDC federation token (RS256 by default) with `iat` and `exp` added.

        `claims` contains everything else (`iss`, `sub`, `aud`, ...); it may not set `iat`,
        `exp` or `nbf`. The expiry is capped at the signing key's, so the key's public part,
        kept in the JWKS until then, verifies the token for its whole life.
        """
        now = require_aware(now)
        reserved = {"iat", "exp", "nbf"} & set(claims)
        if reserved:
            raise CAError(f"federation token claims may not set {sorted(reserved)}; pass ttl")
        authority = self._active(AuthorityKind.FEDERATION_KEY)
        if authority.signer is None:
            raise CAError("the active federation authority has no signer")
        if ttl is None:
            ttl = self.settings.federation_token_ttl
        if ttl <= timedelta(0):
            raise CAError(f"invalid federation token TTL {ttl}: it must be positive")
        expires_at = min(now + ttl, authority.entry.not_after)
        if expires_at <= now:
            raise CAError(
                "the federation token signing key has expired; the CA's rotation is not running"
            )
        payload = dict(claims)
        payload["iat"] = to_unix_seconds(now)
        payload["exp"] = to_unix_seconds(expires_at)
        return authority.signer.sign(payload)


def _expired(entry: JournalEntry, now: datetime) -> bool:
    """Tell whether nothing the authority signed can still be valid at `now`.

    Certificates are valid through their NotAfter second (RFC 5280); tokens are rejected
    from their `exp` on (RFC 7519).
    """
    if entry.kind is AuthorityKind.X509_CA:
        return now > entry.not_after
    return now >= entry.not_after


def _serial(entry: JournalEntry) -> str | None:
    return f"{entry.certificate.serial_number:x}" if entry.certificate is not None else entry.kid
