"""`make demo`: Warden's main job end to end on embedded defaults.

Everything runs in a temporary directory on this machine: a server with SQLite, registration
entries with owners, SVIDs minted and verified, the audit log shown and verified, and the
server stopped. Each step prints the `warden` command it runs, so the demo doubles as a tour
of the CLI. Nothing contacts a host other than 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

console = Console(highlight=False)
TRUST_DOMAIN = "demo.example.org"
NODE_ALIAS = f"spiffe://{TRUST_DOMAIN}/node/demo"
WEB_ID = f"spiffe://{TRUST_DOMAIN}/web"
API_ID = f"spiffe://{TRUST_DOMAIN}/orders-api"
OPERATOR_ID = f"spiffe://{TRUST_DOMAIN}/operator"
# Two workloads run as these users (when the demo runs as root), so the agent tells them apart.
WEB_UID = 61000
API_UID = 61001
INTRUDER_UID = 61002


# How long the demo waits for the agent's batched delivery report before showing entries.
AGENT_REPORT_WAIT_SECONDS = 3


def _first_token(output: str) -> str:
    """The first JWT-SVID in `warden api fetch jwt -output json` output."""
    document = json.loads(output)
    svids = document.get("svids", document) if isinstance(document, dict) else document
    first = svids[0] if isinstance(svids, list) else svids
    return str(first.get("token") or first.get("svid"))


class DemoError(Exception):
    """A demo step failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Demo:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "server" / "api.sock"
        self.server_config = directory / "server.conf"
        self.agent_config = directory / "agent.conf"
        # Outside the agent's data_dir (mode 0700), so that workloads of other users reach it.
        self.agent_socket = directory / "workload-api" / "api.sock"
        self.server_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.environment = dict(
            os.environ,
            WARDEN_SERVER_SOCKET=str(self.socket),
            # Tables from the CLI get the demo's own width rather than 80 columns.
            COLUMNS=str(max(console.width, 140)),
        )

    # -- helpers ----------------------------------------------------------------------------

    def step(self, title: str) -> None:
        console.print()
        console.rule(f"[bold]{title}")

    def run(
        self, arguments: Sequence[str], *, show: bool = True, check: bool = True, echo: bool = True
    ) -> str:
        """Run `warden <arguments>`, print the command and its output, return the output."""
        command = ["warden", *arguments]
        if echo:
            console.print(f"[bold cyan]$ {shlex.join(command)}[/]")
        result = subprocess.run(
            [sys.executable, "-m", "warden", *arguments],
            capture_output=True,
            text=True,
            env=self.environment,
            timeout=120,
            check=False,
        )
        output = result.stdout + result.stderr
        if show and output.strip():
            # Printed as is: the CLI already laid its tables out for the terminal's width.
            sys.stdout.write(output.rstrip() + "\n")
            sys.stdout.flush()
        if check and result.returncode != 0:
            raise DemoError(f"'{shlex.join(command)}' failed with status {result.returncode}")
        return result.stdout

    def start(
        self, arguments: Sequence[str], log_name: str, ready: Callable[[], bool]
    ) -> subprocess.Popen[bytes]:
        log = (self.directory / log_name).open("wb")
        console.print(
            f"[bold cyan]$ {shlex.join(['warden', *arguments])} &[/]  [dim](log: {log.name})[/]"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "warden", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment,
        )
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DemoError(f"warden {arguments[0]} exited early; see {log.name}")
            if ready():
                return process
            time.sleep(0.2)
        raise DemoError(f"warden {arguments[0]} did not become ready in 60 s; see {log.name}")

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    # -- steps --------------------------------------------------------------------------------

    def start_server(self) -> None:
        self.step("1. Start a Warden server (SQLite and keys in a temporary directory)")
        self.server_config.write_text(
            "server {\n"
            '  bind_address = "127.0.0.1"\n'
            f'  bind_port = "{self.server_port}"\n'
            f'  trust_domain = "{TRUST_DOMAIN}"\n'
            f'  data_dir = "{self.directory / "server"}"\n'
            f'  socket_path = "{self.socket}"\n'
            '  log_level = "info"\n'
            "}\n"
            "plugins {\n"
            '  NodeAttestor "join_token" {\n'
            "    plugin_data {}\n"
            "  }\n"
            "}\n"
        )
        console.print(Panel(self.server_config.read_text().rstrip(), title=str(self.server_config)))

        def healthy() -> bool:
            if not self.socket.exists():
                return False
            check = subprocess.run(
                [sys.executable, "-m", "warden", "healthcheck", "-socketPath", str(self.socket)],
                capture_output=True,
                env=self.environment,
                check=False,
            )
            return check.returncode == 0

        self.start(["server", "run", "-config", str(self.server_config)], "server.log", healthy)
        self.run(["healthcheck", "-verbose"])

    def register(self) -> None:
        self.step("2. Register workloads; every identity has an owner")
        parent = NODE_ALIAS
        self.run(
            [
                "entry", "create", "-spiffeID", WEB_ID, "-parentID", parent,
                "-selector", f"unix:uid:{WEB_UID}", "-owner", "team-shop", "-description", "public web front end",
            ]
        )  # fmt: skip
        self.run(
            [
                "entry", "create", "-spiffeID", API_ID, "-parentID", parent,
                "-selector", f"unix:uid:{API_UID}", "-owner", "team-payments", "-x509SVIDTTL", "30m",
                "-description", "orders API, called by the web front end",
            ]
        )  # fmt: skip
        self.run(
            [
                "entry", "create", "-spiffeID", OPERATOR_ID, "-parentID", parent,
                "-selector", f"unix:uid:{os.getuid()}", "-owner", "team-platform",
                "-description", "the operator running this demo",
            ]
        )  # fmt: skip
        console.print("[dim]An entry without an owner is refused, and nothing is written:[/]")
        self.run(
            [
                "entry", "create", "-spiffeID", f"spiffe://{TRUST_DOMAIN}/nobody", "-parentID", parent,
                "-selector", "unix:uid:1002",
            ],
            check=False,
        )  # fmt: skip
        self.run(["entry", "show"])

    def mint_and_verify(self) -> None:
        self.step("3. Mint an X509-SVID and a JWT-SVID, and verify both")
        svid_dir = self.directory / "minted"
        self.run(
            [
                "x509",
                "mint",
                "-spiffeID",
                f"spiffe://{TRUST_DOMAIN}/tools/backup",
                "-write",
                str(svid_dir),
            ]
        )
        bundle_pem = self.directory / "bundle.pem"
        console.print(f"[bold cyan]$ warden bundle show -format pem > {bundle_pem}[/]")
        bundle_pem.write_text(
            self.run(["bundle", "show", "-format", "pem"], show=False, echo=False)
        )
        console.print(
            f"[bold cyan]$ openssl verify -CAfile {bundle_pem} {svid_dir / 'svid.pem'}[/]"
        )
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(bundle_pem), str(svid_dir / "svid.pem")],
            capture_output=True,
            text=True,
            check=False,
        )
        console.print((verified.stdout + verified.stderr).strip(), markup=False)
        if verified.returncode != 0:
            raise DemoError("openssl could not verify the minted X509-SVID against the bundle")

        token = self.run(
            [
                "jwt",
                "mint",
                "-spiffeID",
                f"spiffe://{TRUST_DOMAIN}/batch-job",
                "-audience",
                "https://api.example.org",
            ],
            show=False,
            echo=False,
        ).strip()
        console.print(
            f"[bold cyan]$ warden jwt mint -spiffeID spiffe://{TRUST_DOMAIN}/batch-job -audience https://api.example.org[/]"
        )
        console.print(f"{token[:40]}...{token[-12:]}  [dim](JWT-SVID, {len(token)} characters)[/]")
        self.verify_jwt(token)

    def verify_jwt(self, token: str) -> None:
        from datetime import UTC, datetime

        from warden.spiffe import TrustDomain, validate_jwt_svid
        from warden.spiffe.bundle import Bundle

        console.print(
            "[bold cyan]$ warden bundle show -format spiffe[/]  [dim](the JWT keys validate the token)[/]"
        )
        bundle_json = self.run(["bundle", "show", "-format", "spiffe"], show=False, echo=False)
        bundle = Bundle.from_jwks_json(TrustDomain(TRUST_DOMAIN), bundle_json)
        svid = validate_jwt_svid(token, "https://api.example.org", bundle, datetime.now(UTC))
        console.print(
            f"JWT-SVID valid: sub={svid.spiffe_id} aud={list(svid.audience)} "
            f"expires {svid.expires_at.strftime('%H:%M:%S')}Z (checked against the SPIFFE bundle's JWT keys)"
        )

    def show_audit_log(self) -> None:
        self.step("6. Every attestation, signing and change is in the append-only audit log")
        self.run(["audit-log", "list", "-limit", "20"])
        self.run(["audit-log", "verify"])

    def audit(self) -> None:
        self.step("7. Govern: inventory the Warden registry beside a sample cloud export")
        from warden.governance.sample import SAMPLE_AS_OF, sample_directory

        sample = sample_directory()
        console.print(
            f"[dim]The sample export in {sample} was taken on "
            f"{SAMPLE_AS_OF:%Y-%m-%d}. It is audited as of today, beside the registry just "
            "built, so identities unused since then show as dormant and its suppressions as "
            "expired.[/]"
        )
        self.run(
            [
                "audit",
                "--warden-datastore", str(self.directory / "server" / "datastore.sqlite3"),
                "--aws-authorization-details", str(sample / "aws" / "authorization-details.json"),
                "--aws-credential-report", str(sample / "aws" / "credential-report.csv"),
                "--cloudtrail", str(sample / "aws" / "cloudtrail"),
                "--k8s-objects", str(sample / "kubernetes" / "objects.json"),
                "--k8s-audit", str(sample / "kubernetes" / "audit.jsonl"),
                "--github", str(sample / "github"),
                "--ownership-map", str(sample / "ownership.yaml"),
                "--roster", str(sample / "roster.txt"),
                "--suppressions", str(sample / "suppressions.yaml"),
                "--workspace", str(self.directory / "audit-workspace"),
            ]
        )  # fmt: skip

    def start_agent(self) -> None:
        self.step("4. Start an agent: it attests its node with a join token")
        token_output = self.run(
            [
                "token",
                "generate",
                "-spiffeID",
                NODE_ALIAS,
                "-owner",
                "team-platform",
                "-output",
                "json",
            ]
        )
        token = json.loads(token_output)["value"]
        agent_dir = self.directory / "agent"
        bundle_pem = self.directory / "bundle.pem"
        self.agent_config.write_text(
            "agent {\n"
            f'  trust_domain = "{TRUST_DOMAIN}"\n'
            '  server_address = "127.0.0.1"\n'
            f'  server_port = "{self.server_port}"\n'
            f'  socket_path = "{self.agent_socket}"\n'
            f'  data_dir = "{agent_dir}"\n'
            f'  trust_bundle_path = "{bundle_pem}"\n'
            f'  join_token = "{token}"\n'
            '  usage_report_interval = "2s"\n'
            "}\n"
            "plugins {\n"
            '  NodeAttestor "join_token" { plugin_data {} }\n'
            '  KeyManager "memory" { plugin_data {} }\n'
            '  WorkloadAttestor "unix" { plugin_data {} }\n'
            "}\n"
        )
        console.print(
            Panel(
                self.agent_config.read_text().replace(token, token[:8] + "..."),
                title=str(self.agent_config),
            )
        )

        def serving() -> bool:
            if not self.agent_socket.exists():
                return False
            check = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "warden",
                    "api",
                    "fetch",
                    "x509",
                    "-socketPath",
                    str(self.agent_socket),
                    "-silent",
                ],
                capture_output=True,
                env=self.environment,
                check=False,
            )
            return check.returncode == 0

        self.start(["agent", "run", "-config", str(self.agent_config)], "agent.log", serving)
        self.run(["agent", "list"])
        console.print(
            "[dim]The operator's own process fetches its identity through the Workload API:[/]"
        )
        self.run(["api", "fetch", "x509", "-socketPath", str(self.agent_socket)])
        token_text = self.run(
            [
                "api",
                "fetch",
                "jwt",
                "-audience",
                "https://ci.example.org",
                "-socketPath",
                str(self.agent_socket),
                "-output",
                "json",
            ],
            show=False,
        )
        jwt_svid = _first_token(token_text)
        self.run(
            [
                "api",
                "validate",
                "jwt",
                "-audience",
                "https://ci.example.org",
                "-svid",
                jwt_svid,
                "-socketPath",
                str(self.agent_socket),
            ]
        )

    def workloads(self) -> None:
        self.step("5. Two workloads talk over mutual TLS with identities from the Workload API")
        from warden.demo_workloads import run_workloads

        distinct = os.getuid() == 0
        if distinct:
            # Workloads run as other users: they must reach the agent's socket and nothing else.
            os.chmod(self.directory, 0o711)  # noqa: S103 - traversal only, keys stay in 0700 dirs
            os.chmod(self.agent_socket.parent, 0o755)  # noqa: S103 - workloads must reach the socket
        else:
            console.print(
                "[yellow]Not running as root: both workloads run as your user and share your "
                "identity. Run the demo as root to see two identities told apart by uid.[/]"
            )
        if not run_workloads(self.agent_socket, distinct, console):
            raise DemoError("the workloads could not talk over mutual TLS; see the lines above")
        console.print("[dim]The agent reports SVID deliveries to the server, for the inventory:[/]")
        time.sleep(AGENT_REPORT_WAIT_SECONDS)
        self.run(["entry", "show", "-parentID", NODE_ALIAS])

    def stop_server(self) -> None:
        self.step("8. Stop everything cleanly")
        console.print("[bold cyan]$ kill -TERM <server pid>[/]")
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            status = process.wait(timeout=30)
            if status != 0:
                raise DemoError(f"a process exited with status {status} on SIGTERM")
        console.print("All processes stopped with status 0.")
        self.processes.clear()


def main() -> int:
    keep = os.environ.get("WARDEN_DEMO_KEEP") == "1"
    directory = Path(tempfile.mkdtemp(prefix="warden-demo-"))
    demo = Demo(directory)
    console.print(Panel.fit(f"Warden demo in {directory}", style="bold green"))
    try:
        demo.start_server()
        demo.register()
        demo.mint_and_verify()
        demo.start_agent()
        demo.workloads()
        demo.show_audit_log()
        demo.audit()
        demo.stop_server()
    except (DemoError, subprocess.TimeoutExpired, OSError, json.JSONDecodeError) as error:
        console.print(f"[bold red]Demo failed:[/] {error}")
        for log in sorted(directory.glob("*.log")):
            console.print(Panel(log.read_text()[-3000:], title=str(log)))
        return 1
    finally:
        demo.stop_all()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    console.print()
    console.print(Panel.fit("Demo finished: every step passed.", style="bold green"))
    if not keep:
        console.print(
            "[dim]Set WARDEN_DEMO_KEEP=1 to keep the temporary directory and its logs.[/]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
