"""The agent's own state in `data_dir`: its SVID, the trust bundle and which key is current.

Files (written atomically; none contains a private key, which the key manager keeps):

- `agent_svid.pem`: the agent SVID chain, leaf first;
- `bundle.json`: the trust domain's bundle in the SPIFFE format;
- `agent_state.json`: the key id of the SVID's key, the node attestor used, and whether the
  node may attest again with the same evidence.

Renewal alternates between two key ids, so the previous key stays on disk while the renewed
SVID's files are written, and an agent stopped at any point of a renewal starts again from one
of the two pairs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from warden.agent.files import write_atomically
from warden.agent.svid import SigningError
from warden.pki.errors import KeyManagerError
from warden.pki.keys import KeyManager, KeyType, PrivateKey
from warden.spiffe import Bundle, SpiffeError, SpiffeId, TrustDomain

log = logging.getLogger(__name__)

KEY_IDS = ("agent-svid-a", "agent-svid-b")
SVID_FILE = "agent_svid.pem"
BUNDLE_FILE = "bundle.json"
STATE_FILE = "agent_state.json"
#: Shortest time between two renewals of the agent SVID.
MIN_RENEWAL_SECONDS = 1.0


@dataclass(frozen=True)
class AgentIdentity:
    """The agent SVID with its key, and the bundle it was issued with."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    key_id: str
    bundle: Bundle
    reattestable: bool
    attestor: str
    #: When the agent obtained (or loaded) the SVID.
    obtained_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def spiffe_id(self) -> SpiffeId:
        san = self.chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return SpiffeId.parse(san.get_values_for_type(x509.UniformResourceIdentifier)[0])

    @property
    def not_before(self) -> datetime:
        return self.chain[0].not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.chain[0].not_valid_after_utc

    def renew_at(self) -> datetime:
        """When renewal starts: half of the SVID's usable lifetime.

        The lifetime counts from NotBefore or from when the agent obtained the SVID, whichever
        is later, because servers backdate NotBefore. Counting from a backdated NotBefore
        would renew a short-lived SVID as soon as it arrives. Renewal waits at least
        `MIN_RENEWAL_SECONDS`.
        """
        start = max(self.not_before, self.obtained_at)
        half = max((self.not_after - start) / 2, timedelta(seconds=MIN_RENEWAL_SECONDS))
        return start + half

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.not_after


def other_key_id(key_id: str) -> str:
    return KEY_IDS[1] if key_id == KEY_IDS[0] else KEY_IDS[0]


def new_key(keys: KeyManager, key_id: str) -> PrivateKey:
    return keys.generate_key(key_id, KeyType.EC_P256)


class StateStore:
    """Reads and writes the agent's state files in `directory`."""

    def __init__(self, directory: Path, keys: KeyManager, trust_domain: TrustDomain) -> None:
        self.directory = directory
        self.keys = keys
        self.trust_domain = trust_domain

    def load(self) -> AgentIdentity | None:
        """Return the stored identity, or None when there is none or it cannot be used."""
        state_path = self.directory / STATE_FILE
        if not state_path.exists():
            return None
        try:
            state = json.loads(state_path.read_text())
            chain = tuple(
                x509.load_pem_x509_certificates((self.directory / SVID_FILE).read_bytes())
            )
            bundle = Bundle.from_jwks_json(
                self.trust_domain, (self.directory / BUNDLE_FILE).read_bytes()
            )
            key_id = state["key_id"]
            key = self.keys.get_key(key_id)
            if chain[0].public_key() != key.public_key():
                # `save` writes the SVID before the key id, so an agent stopped between the
                # two left the renewed SVID beside the previous key id: the renewed SVID's
                # key is the other one.
                key_id = other_key_id(key_id)
                key = self.keys.get_key(key_id)
        except (OSError, ValueError, KeyError, SpiffeError, KeyManagerError) as error:
            log.warning(
                "the stored agent SVID cannot be used; the agent attests again",
                extra={"path": str(self.directory), "error": str(error)},
            )
            return None
        if chain[0].public_key() != key.public_key():
            log.warning(
                "the stored agent SVID does not match its key; the agent attests again",
                extra={"path": str(self.directory)},
            )
            return None
        return AgentIdentity(
            chain,
            key,
            key_id,
            bundle,
            bool(state.get("reattestable")),
            str(state.get("attestor", "")),
        )

    def save(self, identity: AgentIdentity) -> None:
        """Write the identity's files; the key is already in the key manager."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in identity.chain)
        write_atomically(self.directory / SVID_FILE, pem, 0o644)
        write_atomically(
            self.directory / BUNDLE_FILE, identity.bundle.to_jwks_json(indent=2).encode(), 0o644
        )
        state = {
            "key_id": identity.key_id,
            "reattestable": identity.reattestable,
            "attestor": identity.attestor,
            "spiffe_id": str(identity.spiffe_id),
        }
        write_atomically(self.directory / STATE_FILE, json.dumps(state, indent=2).encode(), 0o600)

    def save_bundle(self, bundle: Bundle) -> None:
        write_atomically(
            self.directory / BUNDLE_FILE, bundle.to_jwks_json(indent=2).encode(), 0o644
        )

    def forget(self) -> None:
        """Remove the stored SVID, so the next start attests again (after an eviction)."""
        for name in (STATE_FILE, SVID_FILE):
            (self.directory / name).unlink(missing_ok=True)
        for key_id in KEY_IDS:
            try:
                self.keys.delete_key(key_id)
            except KeyManagerError as error:
                log.warning(
                    "could not delete an agent key", extra={"key_id": key_id, "error": str(error)}
                )


def check_chain_key(chain: tuple[x509.Certificate, ...], key: PrivateKey) -> None:
    if not chain or chain[0].public_key() != key.public_key():
        raise SigningError("the server returned an agent SVID that is not for the agent's key")
