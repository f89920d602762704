"""User-agent families and source networks, the values baselines are kept on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.behavior.agents import agent_family
from warden.behavior.networks import NetworkTableError, load_network_table, network_of


@pytest.mark.parametrize(
    ("agent", "family"),
    [
        ("aws-cli/2.15.0 Python/3.11.6 Linux/6.2.0 exe/x86_64.ubuntu.22", "aws-cli"),
        ("aws-cli/2.13.5 Python/3.11.4 Darwin/23.1.0", "aws-cli"),
        ("Boto3/1.34.2 md/Botocore#1.34.2 ua/2.0 os/linux#6.1", "boto3"),
        ("[Boto3/1.26.165 Python/3.9.16 Linux/5.10]", "boto3"),
        ("aws-sdk-go-v2/1.17.0 os/linux lang/go/1.18.10 md/GOOS/linux", "aws-sdk-go-v2"),
        (
            "aws-sdk-go/1.41.4 (go1.18.3; linux; amd64) fleet-agent/3.2.582.0",
            "aws-sdk-go fleet-agent",
        ),
        ("aws-sdk-go/1.41.4 (go1.18.3; linux; amd64) fleet-agent/", "aws-sdk-go fleet-agent"),
        (
            "aws-sdk-java/1.12.488 Linux/5.10 OpenJDK_64-Bit_Server_VM/25.372 (x) java/1.8.0",
            "aws-sdk-java",
        ),
        (
            "APN/1.0 HashiCorp/1.0 Terraform/1.5.7 (+https://www.terraform.io) "
            "terraform-provider-aws/5.31.0 aws-sdk-go/1.49.13",
            "terraform",
        ),
        ("scanner_0f8fad5b-d9cb-4f34-b7a1-3d6f1b9a0c11", "scanner"),
        ("nightly-job-1718031234567", "nightly-job"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", "browser"),
        ("AWS Internal", "aws-internal"),
        ("cloudformation.amazonaws.com", "aws-service"),
        ("kubectl/v1.29.1 (linux/amd64) kubernetes/bc401b9", "kubectl"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_agent_family_examples(agent, family):
    assert agent_family(agent) == family


@given(st.text(max_size=200))
def test_agent_family_total_and_lowercase(agent):
    family = agent_family(agent)
    assert family is None or family == family.lower()


@given(st.from_regex(r"[a-z][a-z-]{1,12}", fullmatch=True), st.integers(0, 99), st.integers(0, 99))
def test_agent_family_ignores_versions(name, major, minor):
    assert agent_family(f"{name}/{major}.{minor} os/linux") == agent_family(f"{name}/1.0")


def test_default_prefixes():
    assert network_of("203.0.113.45") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert network_of("010.001.002.003") == "10.1.2.0/24"
    assert network_of("AWS Internal") is None
    assert network_of("ec2.amazonaws.com") is None
    assert network_of(None) is None


def test_cidr_table_most_specific_wins(tmp_path):
    table_path = tmp_path / "networks.csv"
    table_path.write_text("cidr,name\n10.0.0.0/8,corporate\n10.20.0.0/16,build farm  # CI\n")
    table = load_network_table(table_path)
    assert len(table) == 2
    assert network_of("10.20.3.4", table) == "build farm"
    assert network_of("10.21.3.4", table) == "corporate"
    assert network_of("198.51.100.7", table) == "198.51.100.0/24"


def test_iptoasn_table(tmp_path):
    table_path = tmp_path / "ip2asn-v4.tsv"
    table_path.write_text(
        "198.51.100.0\t198.51.100.255\t64500\tZZ\tEXAMPLE-NET\n"
        "203.0.113.0\t203.0.113.255\t0\tNone\tNot routed\n"
    )
    table = load_network_table(table_path)
    assert network_of("198.51.100.7", table) == "AS64500 EXAMPLE-NET"
    assert network_of("203.0.113.7", table) == "203.0.113.0/24"


def test_bad_table_names_line(tmp_path):
    table_path = tmp_path / "networks.csv"
    table_path.write_text("10.0.0.0/8,corporate\nnot-a-network,lab\n")
    with pytest.raises(NetworkTableError, match=r"networks.csv:2"):
        load_network_table(table_path)


def test_missing_table_is_clear(tmp_path):
    with pytest.raises(NetworkTableError, match="cannot read network table"):
        load_network_table(tmp_path / "absent.csv")
