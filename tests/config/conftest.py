"""Fixtures of the configuration tests: write a configuration file and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from warden.config import ServerConfig, load_server_config

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write dedented HCL to a file in tmp_path and return its path."""

    def write(text: str, name: str = "server.conf") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def load_server(write_config: WriteConfig) -> Callable[..., ServerConfig]:
    """Write a server configuration and load it."""

    def load(text: str, expand_env: bool = False) -> ServerConfig:
        return load_server_config(write_config(text), expand_env=expand_env)

    return load
