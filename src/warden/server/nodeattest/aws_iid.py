"""aws_iid: the node proves it is an EC2 instance with its signed instance identity document.

The agent reads the document and its `rsa2048` PKCS#7 signature from the instance metadata
service. The server verifies the signature with the region's AWS RSA-2048 certificate (from a
file the operator provides: AWS publishes one certificate per region in the EC2 User Guide,
"Verify the instance identity document"), requires the signed content to equal the document
byte for byte, attests each instance once, checks an optional account allow list and,
optionally, calls ec2:DescribeInstances to add tag and security-group selectors.

Agent ID: `spiffe://<td>/spire/agent/aws_iid/<account>/<region>/<instance>`, as SPIRE forms it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from warden.server.nodeattest.base import (
    AttestationError,
    AttestationResult,
    AttestorContext,
    Challenger,
    agent_id,
)
from warden.spiffe import Selector

log = logging.getLogger(__name__)

_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Keys of the document that must be present and what they become.
_REQUIRED_FIELDS = ("accountId", "region", "instanceId", "imageId", "availabilityZone")


def load_region_certificates(path: str) -> dict[str, x509.Certificate]:
    """Read AWS's per-region RSA-2048 certificates.

    The file is JSON mapping each region to its PEM certificate, or a directory holding one
    `<region>.pem` file per region.
    """
    source = Path(path)
    certificates: dict[str, x509.Certificate] = {}
    try:
        if source.is_dir():
            for pem_file in sorted(source.glob("*.pem")):
                certificates[pem_file.stem] = x509.load_pem_x509_certificate(pem_file.read_bytes())
        else:
            mapping = json.loads(source.read_text())
            if not isinstance(mapping, dict):
                raise ValueError("expected a JSON object mapping region to PEM certificate")
            for region, pem in mapping.items():
                certificates[str(region)] = x509.load_pem_x509_certificate(str(pem).encode())
    except (OSError, ValueError) as error:
        raise ValueError(
            f'NodeAttestor "aws_iid": cannot read the AWS region certificates at {path}: {error}'
        ) from error
    if not certificates:
        raise ValueError(f'NodeAttestor "aws_iid": no certificate found at {path}')
    return certificates


def verify_pkcs7(signature_der: bytes, certificate: x509.Certificate) -> bytes:
    """Verify a PKCS#7 SignedData with `certificate`'s RSA key and return the signed content."""
    try:
        return _verify_pkcs7(signature_der, certificate)
    except AttestationError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as error:
        # asn1crypto parses lazily, so a malformed structure can fail at any later access.
        raise AttestationError(
            f"aws_iid: the rsa2048 signature is not a valid PKCS#7 SignedData: {error}",
            permission_denied=False,
        ) from None


def _verify_pkcs7(signature_der: bytes, certificate: x509.Certificate) -> bytes:
    try:
        content_info = cms.ContentInfo.load(signature_der)
        if content_info["content_type"].native != "signed_data":
            raise ValueError("not a PKCS#7 SignedData")
        signed_data = content_info["content"]
        content = signed_data["encap_content_info"]["content"].native
        signer_infos = signed_data["signer_infos"]
        if content is None or len(signer_infos) != 1:
            raise ValueError("expected attached content and exactly one signer")
        signer = signer_infos[0]
        digest_name = signer["digest_algorithm"]["algorithm"].native
        signature = signer["signature"].native
        signed_attributes = signer["signed_attrs"]
    except (ValueError, KeyError, TypeError) as error:
        raise AttestationError(
            f"aws_iid: the rsa2048 signature is not a valid PKCS#7 SignedData: {error}",
            permission_denied=False,
        ) from None
    digest_class = _DIGESTS.get(digest_name)
    if digest_class is None:
        raise AttestationError(f"aws_iid: unsupported digest algorithm {digest_name!r}")
    if isinstance(content, str):
        content = content.encode()
    if signed_attributes.native:
        digest = hashes.Hash(digest_class())
        digest.update(content)
        expected_digest = digest.finalize()
        message_digest = next(
            (
                attribute["values"][0].native
                for attribute in signed_attributes
                if attribute["type"].native == "message_digest"
            ),
            None,
        )
        if message_digest != expected_digest:
            raise AttestationError(
                "aws_iid: the signature's message digest does not match the content"
            )
        # Signed attributes are signed as a DER SET, not with their [0] IMPLICIT tag.
        signed_bytes = b"\x31" + signed_attributes.dump()[1:]
    else:
        signed_bytes = content
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise AttestationError("aws_iid: the region certificate does not hold an RSA key")
    try:
        public_key.verify(signature, signed_bytes, padding.PKCS1v15(), digest_class())
    except InvalidSignature:
        raise AttestationError(
            "aws_iid: the instance identity document's signature does not verify with the "
            "region's AWS certificate"
        ) from None
    return bytes(content)


class AwsIidAttestor:
    name = "aws_iid"

    def __init__(self, plugin_data: Mapping[str, Any], context: AttestorContext) -> None:
        self._context = context
        path = plugin_data.get("region_certificates_path")
        self._certificates: dict[str, x509.Certificate] = {}
        if path:
            self._certificates = load_region_certificates(str(path))
        else:
            log.error(
                'NodeAttestor "aws_iid": region_certificates_path is not set, so every aws_iid '
                "attestation will be rejected; set it to a JSON file mapping each region to "
                "AWS's RSA-2048 certificate, or a directory of <region>.pem files (the EC2 User "
                'Guide publishes them under "Verify the instance identity document")'
            )
        accounts = plugin_data.get("allowed_account_ids") or []
        self._allowed_accounts = {str(a) for a in accounts}
        self._describe = bool(plugin_data.get("describe_instances", False)) or bool(
            plugin_data.get("ec2_endpoint_url")
        )
        self._plugin_data = dict(plugin_data)
        self._skip_block_device = bool(plugin_data.get("skip_block_device", False))

    async def attest(self, payload: bytes, challenge: Challenger) -> AttestationResult:
        document_bytes, signature = _decode_payload(payload)
        try:
            document = json.loads(document_bytes)
            fields = {key: str(document[key]) for key in _REQUIRED_FIELDS}
        except (ValueError, KeyError, TypeError) as error:
            raise AttestationError(
                f"aws_iid: the instance identity document is malformed: {error}",
                permission_denied=False,
            ) from None
        region = fields["region"]
        if not self._certificates:
            raise AttestationError(
                "aws_iid: this server has no AWS region certificates (region_certificates_path "
                "is not set), so it cannot verify instance identity documents"
            )
        certificate = self._certificates.get(region)
        if certificate is None:
            raise AttestationError(
                f"aws_iid: no AWS certificate configured for region {region!r}; add it to "
                "region_certificates_path"
            )
        signed_content = verify_pkcs7(signature, certificate)
        if signed_content != document_bytes:
            raise AttestationError(
                "aws_iid: the signed content differs from the instance identity document sent"
            )
        account = fields["accountId"]
        if self._allowed_accounts and account not in self._allowed_accounts:
            raise AttestationError(f"aws_iid: account {account} is not in the allowed accounts")

        selectors = [
            Selector("aws_iid", f"account_id:{account}"),
            Selector("aws_iid", f"region:{region}"),
            Selector("aws_iid", f"az:{fields['availabilityZone']}"),
            Selector("aws_iid", f"image:id:{fields['imageId']}"),
            Selector("aws_iid", f"instance:id:{fields['instanceId']}"),
        ]
        if self._describe:
            selectors.extend(await asyncio.to_thread(self._describe_instance, fields))
        return AttestationResult(
            agent_id=agent_id(
                self._context.trust_domain, "aws_iid", account, region, fields["instanceId"]
            ),
            selectors=tuple(selectors),
            # Attest each instance once: a copied document must not yield a second agent.
            reattestable=False,
            details={"document_sha256": hashlib.sha256(document_bytes).hexdigest()},
        )

    def _describe_instance(self, fields: Mapping[str, str]) -> list[Selector]:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {"region_name": fields["region"]}
        endpoint = self._plugin_data.get("ec2_endpoint_url")
        if endpoint:
            arguments["endpoint_url"] = endpoint
        access_key = self._plugin_data.get("access_key_id")
        secret_key = self._plugin_data.get("secret_access_key")
        if access_key and secret_key:
            arguments["aws_access_key_id"] = access_key
            arguments["aws_secret_access_key"] = secret_key
        client = boto3.client("ec2", **arguments)
        try:
            response = client.describe_instances(InstanceIds=[fields["instanceId"]])
        except (BotoCoreError, ClientError) as error:
            raise AttestationError(
                f"aws_iid: ec2:DescribeInstances failed for {fields['instanceId']}: {error}"
            ) from None
        instances = [i for r in response.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances:
            raise AttestationError(f"aws_iid: instance {fields['instanceId']} not found in EC2")
        instance = instances[0]
        state = instance.get("State", {}).get("Name")
        if state != "running":
            raise AttestationError(
                f"aws_iid: instance {fields['instanceId']} is {state!r}, not running"
            )
        selectors = [
            Selector("aws_iid", f"tag:{tag['Key']}:{tag['Value']}")
            for tag in instance.get("Tags", [])
            if tag.get("Key") and tag.get("Value") is not None
        ]
        for group in instance.get("SecurityGroups", []):
            selectors.append(Selector("aws_iid", f"sg:id:{group['GroupId']}"))
            selectors.append(Selector("aws_iid", f"sg:name:{group['GroupName']}"))
        profile = instance.get("IamInstanceProfile", {}).get("Arn")
        if profile:
            selectors.append(Selector("aws_iid", f"iamrole:{profile}"))
        return selectors


def encode_payload(document: bytes, rsa2048_signature_base64: str) -> bytes:
    """The agent's attestation payload: the document and the base64 rsa2048 signature."""
    return json.dumps({"document": document.decode(), "rsa2048": rsa2048_signature_base64}).encode()


def _decode_payload(payload: bytes) -> tuple[bytes, bytes]:
    try:
        data = json.loads(payload)
        document = data["document"].encode()
        signature_text = "".join(str(data["rsa2048"]).split())
        for marker in ("-----BEGIN PKCS7-----", "-----END PKCS7-----"):
            signature_text = signature_text.replace(marker.replace(" ", ""), "")
        signature = base64.b64decode(signature_text, validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise AttestationError(
            f"aws_iid: malformed attestation data ({error}); expected "
            '{"document": "...", "rsa2048": "<base64 PKCS#7>"}',
            permission_denied=False,
        ) from None
    return document, signature
