"""Agent commands: `agent run` starts an agent; `agent list|show|count|evict|ban` manage
attested agents through the server's admin socket."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from warden.cli._common import (
    check_output_format,
    console,
    fail,
    format_time,
    print_json,
    say,
    table,
)
from warden.cli.server import Output, SocketPath, _admin_call, _client

agent_app = typer.Typer(help="Run an agent, or manage attested agents.", no_args_is_help=True)

AgentIdOpt = Annotated[str, typer.Option("-spiffeID", "--spiffeID", help="The agent's SPIFFE ID")]


@agent_app.command("run")
def agent_run(
    config: Annotated[
        str, typer.Option("-config", "--config", help="Path to the agent's HCL configuration")
    ] = "agent.conf",
    expand_env: Annotated[
        bool,
        typer.Option(
            "-expandEnv", "--expandEnv", help="Expand $VARIABLES in the configuration file"
        ),
    ] = False,
    join_token: Annotated[
        str,
        typer.Option(
            "-joinToken", "--joinToken", help="Join token, overriding the configuration's"
        ),
    ] = "",
) -> None:
    """Run the agent until SIGINT or SIGTERM."""
    from warden.agent.main import run_agent

    raise typer.Exit(run_agent(config, expand_env=expand_env, join_token=join_token or None))


def _agent_json(agent: Any) -> dict[str, Any]:
    return {
        "spiffe_id": agent.spiffe_id,
        "attestation_type": agent.attestation_type,
        "serial": agent.serial,
        "svid_expires_at": agent.svid_expires_at,
        "selectors": [{"type": s.type, "value": s.value} for s in agent.selectors],
        "banned": agent.banned,
        "owner": agent.owner,
        "created_at": agent.created_at,
        "last_seen_at": agent.last_seen_at,
        "can_reattest": agent.can_reattest,
    }


def _print_agents(agents: list[Any], output: str) -> None:
    if output == "json":
        print_json({"agents": [_agent_json(a) for a in agents]})
        return
    console.print(f"Found {len(agents)} attested agent{'s' if len(agents) != 1 else ''}")
    if agents:
        console.print(
            table(
                None,
                (
                    "SPIFFE ID",
                    "Attestation",
                    "Owner",
                    "Banned",
                    "SVID expires",
                    "Last seen",
                    "Selectors",
                ),
                (
                    (
                        a.spiffe_id,
                        a.attestation_type,
                        a.owner,
                        "yes" if a.banned else "no",
                        format_time(a.svid_expires_at),
                        format_time(a.last_seen_at),
                        "\n".join(f"{s.type}:{s.value}" for s in a.selectors),
                    )
                    for a in agents
                ),
            )
        )


@agent_app.command("list")
def agent_list(
    attestation_type: Annotated[
        str,
        typer.Option("-attestationType", "--attestationType", help="Only agents attested this way"),
    ] = "",
    banned: Annotated[
        str,
        typer.Option(
            "-banned", "--banned", help="true or false: only banned or only unbanned agents"
        ),
    ] = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """List attested agents."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    if banned not in ("", "true", "false"):
        fail(f"invalid -banned {banned!r}: use true or false")
    agents: list[Any] = []
    with _client(socket_path) as client:
        token = ""
        while True:
            response = _admin_call(
                client.call,
                client.agents.ListAgents,
                admin_pb2.ListAgentsRequest(
                    by_attestation_type=attestation_type,
                    by_banned=banned,
                    page_size=1000,
                    page_token=token,
                ),
            )
            agents.extend(response.agents)
            token = response.next_page_token
            if not token:
                break
    _print_agents(agents, output)


@agent_app.command("show")
def agent_show(
    spiffe_id: AgentIdOpt = "", socket_path: SocketPath = "", output: Output = "pretty"
) -> None:
    """Show one attested agent."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    if not spiffe_id:
        fail("-spiffeID is required; list agents with 'warden agent list'")
    with _client(socket_path) as client:
        agent = _admin_call(
            client.call, client.agents.GetAgent, admin_pb2.GetAgentRequest(spiffe_id=spiffe_id)
        )
    _print_agents([agent], output)


@agent_app.command("count")
def agent_count(socket_path: SocketPath = "", output: Output = "pretty") -> None:
    """Count attested agents."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    with _client(socket_path) as client:
        response = _admin_call(
            client.call, client.agents.CountAgents, admin_pb2.CountAgentsRequest()
        )
    if output == "json":
        print_json({"count": response.count})
    else:
        console.print(f"{response.count} attested agent{'s' if response.count != 1 else ''}")


@agent_app.command("evict")
def agent_evict(spiffe_id: AgentIdOpt = "", socket_path: SocketPath = "") -> None:
    """Forget an agent: its SVID stops working and it must attest again."""
    from warden.api.server.v1 import admin_pb2

    if not spiffe_id:
        fail("-spiffeID is required; list agents with 'warden agent list'")
    with _client(socket_path) as client:
        _admin_call(
            client.call, client.agents.EvictAgent, admin_pb2.EvictAgentRequest(spiffe_id=spiffe_id)
        )
    say("Agent evicted: {}", spiffe_id)


@agent_app.command("ban")
def agent_ban(spiffe_id: AgentIdOpt = "", socket_path: SocketPath = "") -> None:
    """Ban an agent: its SVID stops working and it may not attest again until evicted."""
    from warden.api.server.v1 import admin_pb2

    if not spiffe_id:
        fail("-spiffeID is required; list agents with 'warden agent list'")
    with _client(socket_path) as client:
        _admin_call(
            client.call, client.agents.BanAgent, admin_pb2.BanAgentRequest(spiffe_id=spiffe_id)
        )
    say("Agent banned: {}", spiffe_id)


def register(app: typer.Typer) -> None:
    """Add the agent family's commands to `app`."""
    app.add_typer(agent_app, name="agent")
