"""The short-lived credentials that replace each kind of static one."""

from __future__ import annotations

from warden.scan.model import Replacement

AWS_FEDERATION = Replacement(
    "warden-oidc-federation-aws",
    "Federate the workload with AWS: STS exchanges a Warden JWT-SVID for temporary credentials "
    "(AssumeRoleWithWebIdentity) through Warden's token exchange. Then deactivate and delete "
    "the access key.",
)
GCP_FEDERATION = Replacement(
    "warden-oidc-federation-gcp",
    "Use workload identity federation: Google STS exchanges a Warden JWT-SVID for a "
    "short-lived access token. Then delete the service account key.",
)
AZURE_FEDERATION = Replacement(
    "warden-oidc-federation-azure",
    "Add a federated identity credential to the Entra application, so that Azure exchanges a "
    "Warden JWT-SVID for an access token. Then remove the client secret or account key.",
)
CI_FEDERATION = Replacement(
    "warden-token-exchange-ci",
    "Use a short-lived token instead: a GitHub App installation token (one hour) or the CI "
    "system's OIDC token exchanged through Warden's token exchange. Then revoke this token.",
)
DATABASE_LEASE = Replacement(
    "warden-database-lease",
    "Use a Warden database lease: a database user created for each lease, valid until the "
    "lease expires and dropped on revocation. Then change this password.",
)
KUBERNETES_PROJECTED_TOKEN = Replacement(
    "kubernetes-projected-token",
    "Use a projected service account token (TokenRequest API): bound to an audience, "
    "expiring, rotated by the kubelet. Then delete the legacy token Secret.",
)
X509_SVID = Replacement(
    "warden-x509-svid",
    "Use an X509-SVID from the Warden agent: a short-lived key and certificate rotated at "
    "half-life and never written to the repository. Then revoke this key.",
)
JWT_SVID = Replacement(
    "warden-jwt-svid",
    "Use a JWT-SVID fetched at run time from the Warden agent: short-lived and bound to an "
    "audience, verified against Warden's JWKS.",
)
VAULT_LOGIN = Replacement(
    "warden-jwt-svid-vault-login",
    "Let the workload log in to Vault with its Warden JWT-SVID (Vault's jwt auth method) and "
    "get a short-lived token at run time. Then revoke this token.",
)
REGISTRY_TOKEN = Replacement(
    "registry-short-lived-token",
    "Use short-lived registry credentials (for example `aws ecr get-login-password` after "
    "Warden federation, or the registry's OIDC trusted publishing). Then revoke this token.",
)
SIGNING_KEY = Replacement(
    "secret-store-signing-key",
    "Load the signing key at run time from a secret store and rotate it; for tokens between "
    "services, prefer JWT-SVIDs signed by Warden and verified against its JWKS.",
)
SECRET_STORE = Replacement(
    "secret-store-rotation",
    "The provider issues no short-lived credential for this key: revoke it, issue a new one, "
    "keep it in a secret store, inject it at run time, and rotate it on a schedule.",
)
HOST_KEY = Replacement(
    "host-generated-key",
    "Generate the private key on the host that uses it and never commit it; for service "
    "identity prefer an X509-SVID from the Warden agent. Then replace this key.",
)
WEBHOOK = Replacement(
    "secret-store-webhook",
    "A webhook URL carries its secret in the path: regenerate the webhook, keep the URL in a "
    "secret store and inject it at run time.",
)
PASSWORD_HASH = Replacement(
    "remove-password-hash",
    "Remove the hash and change the password: a leaked hash can be cracked offline. Service "
    "accounts should use a Warden-issued credential instead of a password.",
)
