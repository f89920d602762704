"""HCL 1 parsing into a tree that keeps the line of every key."""

from __future__ import annotations

import textwrap

import pytest

from warden.config import ConfigError
from warden.config.hcl import Block, Value, parse_hcl


def _parse(text: str) -> Block:
    return parse_hcl(textwrap.dedent(text).lstrip("\n"), "test.conf")


def _lines(block: Block, prefix: str = "") -> dict[str, int]:
    """Map each dotted key path to its line; repeated keys get a [n] suffix."""
    found: dict[str, int] = {}
    counts: dict[str, int] = {}
    for entry in block.entries:
        path = f"{prefix}{entry.key}"
        if path in counts or len(block.get_all(entry.key)) > 1:
            counts[path] = counts.get(path, -1) + 1
            path = f"{path}[{counts[path]}]"
        found[path] = entry.line
        if isinstance(entry.node, Block):
            found.update(_lines(entry.node, path + "."))
    return found


def test_keys_carry_their_lines() -> None:
    block = _parse(
        """
        server {
          bind_port = "8081"

          ca_subject {
            country = ["US"]
          }
        }
        """
    )

    assert _lines(block) == {
        "server": 1,
        "server.bind_port": 2,
        "server.ca_subject": 4,
        "server.ca_subject.country": 5,
    }


def test_labels_nest_as_in_hcl() -> None:
    block = _parse(
        """
        plugins {
          NodeAttestor "join_token" {
            plugin_data {}
          }
          NodeAttestor "x509pop" {
            plugin_data {
              ca_bundle_path = "ca.pem"
            }
          }
        }
        """
    )

    assert _lines(block) == {
        "plugins": 1,
        "plugins.NodeAttestor[0]": 2,
        "plugins.NodeAttestor[0].join_token": 2,
        "plugins.NodeAttestor[0].join_token.plugin_data": 3,
        "plugins.NodeAttestor[1]": 5,
        "plugins.NodeAttestor[1].x509pop": 5,
        "plugins.NodeAttestor[1].x509pop.plugin_data": 6,
        "plugins.NodeAttestor[1].x509pop.plugin_data.ca_bundle_path": 7,
    }


def test_equals_block_and_bare_block_are_alike() -> None:
    block = _parse(
        """
        a = {
          x = 1
        }
        b {
          x = 2
        }
        """
    )

    assert block.to_plain() == {"a": {"x": 1}, "b": {"x": 2}}
    assert _lines(block) == {"a": 1, "a.x": 2, "b": 4, "b.x": 5}


def test_repeated_scalar_stays_visible() -> None:
    block = _parse(
        """
        server {
          bind_port = 1
          bind_port = 2
        }
        """
    )

    server = block.get_all("server")[0].node
    assert isinstance(server, Block)
    entries = server.get_all("bind_port")
    assert [entry.line for entry in entries] == [2, 3]
    assert [entry.node for entry in entries] == [Value(1, 2), Value(2, 3)]


def test_repeated_top_level_block_stays_visible() -> None:
    block = _parse("server {\n  a = 1\n}\nserver {\n  b = 2\n}\n")

    assert [entry.line for entry in block.get_all("server")] == [1, 4]


def test_list_of_objects_becomes_blocks() -> None:
    block = _parse(
        """
        telemetry {
          DogStatsd = [
            { address = "localhost:8125" },
            {
              address = "collector:8125"
            },
          ]
        }
        """
    )

    telemetry = block.get_all("telemetry")[0].node
    assert isinstance(telemetry, Block)
    sinks = telemetry.get_all("DogStatsd")
    assert [entry.line for entry in sinks] == [3, 4]
    assert [entry.node.to_plain() for entry in sinks if isinstance(entry.node, Block)] == [
        {"address": "localhost:8125"},
        {"address": "collector:8125"},
    ]


def test_lists_and_scalars_keep_types() -> None:
    block = _parse(
        """
        a = ["x", "y"]
        b = 10
        c = true
        d = 1.5
        e = <<EOF
        text
        EOF
        """
    )

    # Go's HCL keeps the heredoc's final line break; pyhcl drops it.
    assert block.to_plain() == {"a": ["x", "y"], "b": 10, "c": True, "d": 1.5, "e": "text"}


def test_comments_are_ignored() -> None:
    block = _parse(
        """
        # a comment
        // another
        /* a
           block comment */
        a = 1 # trailing
        """
    )

    assert block.to_plain() == {"a": 1}
    assert block.get_all("a")[0].line == 5


def test_json_form_is_accepted() -> None:
    block = _parse(
        """
        {
          "server": {
            "trust_domain": "example.org",
            "bind_port": 8081
          }
        }
        """
    )

    assert block.to_plain() == {"server": {"trust_domain": "example.org", "bind_port": 8081}}
    assert _lines(block)["server.bind_port"] == 4


def test_empty_text_is_empty_block() -> None:
    assert _parse("").entries == []
    assert _parse("# only a comment\n").entries == []


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a = 1\nb = \n", 2, "unexpected end of file; expected a value"),
        ("a {\n  b = 1\n", 2, "the file ends inside the block 'a' opened on line 1"),
        (
            'p {\n  K "n" {\n    x = 1\n  }\n',
            4,
            "the file ends inside the block 'p' opened on line 1",
        ),
        ('a = "open\nb = 1\n', 1, "no closing"),
        ("a = 1 }\n", 1, "closes no block"),
        ("a = @\n", 1, "Illegal character '@'"),
        ("a = [1, 2\nb = 3\n", 2, "expected ']' or ','"),
        ("a 1\n", 1, "missing '=' between 'a' and its value"),
        ("a {\n  b c = 1\n}\n", 2, "unexpected '='"),
        ('{"a": 1,}', 1, "invalid JSON"),
    ],
)
def test_syntax_errors_name_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hcl(text, "bad.conf")

    assert caught.value.file == "bad.conf"
    assert caught.value.line == line
    assert caught.value.message.startswith("invalid")
    assert fragment in caught.value.message


def test_syntax_error_hides_string_contents() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hcl('a = "s3cr3t-value" "another-s3cr3t"\n', "bad.conf")

    assert "s3cr3t" not in str(caught.value)
