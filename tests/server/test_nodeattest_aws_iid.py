"""aws_iid node attestation: PKCS#7 verification of instance identity documents.

A test CA stands in for AWS's per-region RSA-2048 certificate, and moto's server on
127.0.0.1 stands in for EC2.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from warden.server.nodeattest.aws_iid import AwsIidAttestor, encode_payload
from warden.server.nodeattest.base import AttestationError, AttestorContext
from warden.spiffe import Selector, TrustDomain

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def region_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test stand-in for AWS")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def document(instance_id: str = "i-0123456789abcdef0", account: str = "123456789012") -> bytes:
    return json.dumps(
        {
            "accountId": account,
            "architecture": "x86_64",
            "availabilityZone": "eu-west-1a",
            "imageId": "ami-0abcdef1234567890",
            "instanceId": instance_id,
            "instanceType": "t3.micro",
            "pendingTime": "2026-12-01T11:00:00Z",
            "privateIp": "10.0.0.12",
            "region": "eu-west-1",
            "version": "2017-09-30",
        },
        indent=2,
    ).encode()


def sign(content: bytes, ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> str:
    signature = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(ca[0], ca[1], hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.NoCerts, pkcs7.PKCS7Options.Binary])
    )
    return base64.b64encode(signature).decode()


def attestor(
    tmp_path: Path, ca: tuple[x509.Certificate, rsa.RSAPrivateKey], **plugin_data: object
) -> AwsIidAttestor:
    certificates = tmp_path / "aws-certificates.json"
    certificates.write_text(
        json.dumps({"eu-west-1": ca[0].public_bytes(serialization.Encoding.PEM).decode()})
    )
    context = AttestorContext(TrustDomain("example.org"), lambda: NOW, datastore=None)
    return AwsIidAttestor({"region_certificates_path": str(certificates), **plugin_data}, context)


async def no_challenge(data: bytes) -> bytes:
    raise AssertionError("aws_iid sends no challenge")


async def test_valid_document_gives_agent_id_and_selectors(tmp_path, region_ca) -> None:
    content = document()
    result = await attestor(tmp_path, region_ca).attest(
        encode_payload(content, sign(content, region_ca)), no_challenge
    )

    assert str(result.agent_id) == (
        "spiffe://example.org/spire/agent/aws_iid/123456789012/eu-west-1/i-0123456789abcdef0"
    )
    assert Selector("aws_iid", "account_id:123456789012") in result.selectors
    assert Selector("aws_iid", "instance:id:i-0123456789abcdef0") in result.selectors
    assert Selector("aws_iid", "az:eu-west-1a") in result.selectors
    assert not result.reattestable


async def test_signature_of_another_document_is_rejected(tmp_path, region_ca) -> None:
    signature = sign(document(instance_id="i-0aaaaaaaaaaaaaaaa"), region_ca)
    forged = document(instance_id="i-0bbbbbbbbbbbbbbbb")

    with pytest.raises(AttestationError, match="differs from the instance identity document"):
        await attestor(tmp_path, region_ca).attest(encode_payload(forged, signature), no_challenge)


async def test_document_with_changed_whitespace_is_rejected(tmp_path, region_ca) -> None:
    content = document()
    signature = sign(content, region_ca)
    reformatted = json.dumps(json.loads(content)).encode()

    with pytest.raises(AttestationError, match="differs"):
        await attestor(tmp_path, region_ca).attest(
            encode_payload(reformatted, signature), no_challenge
        )


async def test_signature_by_other_key_is_rejected(tmp_path, region_ca) -> None:
    impostor_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    content = document()
    signature = sign(content, (region_ca[0], impostor_key))

    with pytest.raises(AttestationError, match="does not verify"):
        await attestor(tmp_path, region_ca).attest(encode_payload(content, signature), no_challenge)


async def test_account_outside_allow_list_is_rejected(tmp_path, region_ca) -> None:
    content = document(account="999999999999")
    verifier = attestor(tmp_path, region_ca, allowed_account_ids=["123456789012"])

    with pytest.raises(AttestationError, match="999999999999 is not in the allowed accounts"):
        await verifier.attest(encode_payload(content, sign(content, region_ca)), no_challenge)


async def test_garbage_signature_is_invalid_argument(tmp_path, region_ca) -> None:
    payload = json.dumps(
        {"document": document().decode(), "rsa2048": "bm90IGEgc2lnbmF0dXJl"}
    ).encode()

    with pytest.raises(AttestationError) as raised:
        await attestor(tmp_path, region_ca).attest(payload, no_challenge)
    assert not raised.value.permission_denied


async def test_missing_certificates_reject_every_node(tmp_path, region_ca) -> None:
    context = AttestorContext(TrustDomain("example.org"), lambda: NOW, datastore=None)
    verifier = AwsIidAttestor({}, context)
    content = document()

    with pytest.raises(AttestationError, match="region_certificates_path is not set"):
        await verifier.attest(encode_payload(content, sign(content, region_ca)), no_challenge)


@pytest.fixture(scope="module")
def ec2_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def test_describe_instances_adds_tags_and_groups(
    tmp_path, region_ca, ec2_endpoint, monkeypatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ec2 = boto3.client("ec2", region_name="eu-west-1", endpoint_url=ec2_endpoint)
    group = ec2.create_security_group(GroupName="web-nodes", Description="test")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[group["GroupId"]],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"}]}],
    )["Instances"][0]
    content = document(instance_id=instance["InstanceId"])

    result = await attestor(tmp_path, region_ca, ec2_endpoint_url=ec2_endpoint).attest(
        encode_payload(content, sign(content, region_ca)), no_challenge
    )

    assert Selector("aws_iid", "tag:role:web") in result.selectors
    assert Selector("aws_iid", f"sg:id:{group['GroupId']}") in result.selectors
    assert Selector("aws_iid", "sg:name:web-nodes") in result.selectors


async def test_unknown_instance_is_rejected(tmp_path, region_ca, ec2_endpoint, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    content = document(instance_id="i-0ffffffffffffffff")

    with pytest.raises(AttestationError, match=r"not found|DescribeInstances failed"):
        await attestor(tmp_path, region_ca, ec2_endpoint_url=ec2_endpoint).attest(
            encode_payload(content, sign(content, region_ca)), no_challenge
        )
