"""Diagnostics of configuration loading: errors that stop a process and warnings that do not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a configuration file, located by file, line and key.

    `key` is the dotted path of the setting (`server.bind_port`,
    `plugins.NodeAttestor.aws_iid.plugin_data.access_key_id`), or "" for a finding about
    the file as a whole. `line` is 1-based, or None when no line applies (a missing file).
    A message never contains the value of a secret.
    """

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        location = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.key:
            return f"{location}: {self.key}: {self.message}"
        return f"{location}: {self.message}"


class ConfigError(Exception):
    """A configuration file cannot be used. Carries every problem found, in file order.

    `file`, `line`, `key` and `message` describe the first problem; `problems` lists all of
    them, so an operator can fix a file in one pass.
    """

    def __init__(self, problems: Iterable[Diagnostic]) -> None:
        ordered = sorted(problems, key=lambda problem: (problem.file, problem.line or 0))
        if not ordered:
            raise ValueError("ConfigError needs at least one problem")
        self.problems: tuple[Diagnostic, ...] = tuple(ordered)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    @classmethod
    def single(cls, file: str, line: int | None, key: str, message: str) -> ConfigError:
        """Build an error with exactly one problem."""
        return cls([Diagnostic(file, line, key, message)])

    @property
    def file(self) -> str:
        return self.problems[0].file

    @property
    def line(self) -> int | None:
        return self.problems[0].line

    @property
    def key(self) -> str:
        return self.problems[0].key

    @property
    def message(self) -> str:
        return self.problems[0].message
