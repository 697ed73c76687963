"""The policy file's ``mcp_servers`` (contract §6.4): checked with each problem's place, stored
with the policy version, kept by a later version that does not name them, exported again."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from approvals import policy
from approvals.gate.policies import policies_import
from approvals.mcp.selectors import mcp_servers_current
from approvals.models import PolicyVersion

TYPE = {"name": "crm__send_email", "params_schema": {"type": "object"}}


def document(**extra: object) -> dict[str, object]:
    return {"version": 1, "action_types": [TYPE], **extra}


def test_a_valid_list_of_servers_parses() -> None:
    servers, errors = policy.parse_mcp_servers(
        [
            {"name": "crm", "url": "https://crm.example/mcp", "headers": {"Authorization": "Bearer ${CRM_TOKEN}"}},
            {"name": "files", "command": ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp/x"]},
        ]
    )
    assert errors == []
    assert [s.name for s in servers] == ["crm", "files"]
    assert servers[0].headers == {"Authorization": "Bearer ${CRM_TOKEN}"}
    assert servers[1].command[0] == "npx"


@pytest.mark.parametrize(
    ("servers", "error"),
    [
        ({"name": "crm"}, "mcp_servers: must be a list of servers"),
        ([{"name": "crm"}], "mcp_servers[0]: give exactly one of url (streamable HTTP) or command (stdio)"),
        ([{"name": "c__rm", "url": "http://x/mcp"}], "mcp_servers[0].name: must be letters, digits"),
        ([{"name": "crm", "url": "ftp://x/mcp"}], "mcp_servers[0].url: must be an http(s) URL"),
        ([{"name": "crm", "command": []}], "mcp_servers[0].command: must be a non-empty list of strings"),
        ([{"name": "crm", "url": "http://x/mcp", "headers": {"A": 1}}], "mcp_servers[0].headers: must map"),
        ([{"name": "crm", "command": ["x"], "headers": {"A": "b"}}], "mcp_servers[0].headers: only a url server"),
        ([{"name": "crm", "url": "http://x/mcp", "port": 1}], "mcp_servers[0].port: unknown field"),
        (
            [{"name": "crm", "url": "http://x/mcp"}, {"name": "crm", "command": ["x"]}],
            "mcp_servers[1].name: duplicate server 'crm'",
        ),
    ],
)
def test_a_bad_server_is_refused_with_its_place(servers: object, error: str) -> None:
    with pytest.raises(policy.PolicyError) as refused:
        policy.parse_document(document(mcp_servers=servers))
    assert any(message.startswith(error) for message in refused.value.errors), refused.value.errors


def test_tool_names_split_at_the_double_underscore() -> None:
    assert policy.tool_name("crm", "send_email") == "crm__send_email"
    assert policy.split_tool_name("crm__send_email") == ("crm", "send_email")
    assert policy.split_tool_name("send_email") is None


@pytest.mark.django_db
def test_servers_are_stored_with_the_version_kept_by_later_ones_and_exported() -> None:
    servers = [{"name": "crm", "url": "https://crm.example/mcp", "headers": {"X-Key": "${CRM_KEY}"}}]
    first = policies_import(document=document(mcp_servers=servers), actor="test")
    second = policies_import(document=document(), actor="test")  # names no servers: keeps them
    assert PolicyVersion.objects.get(number=first).document["mcp_servers"] == servers
    assert PolicyVersion.objects.get(number=second).document["mcp_servers"] == servers
    assert list(mcp_servers_current()) == ["crm"]

    out = io.StringIO()
    call_command("export_policies", "--format", "json", stdout=out)
    assert json.loads(out.getvalue())["mcp_servers"] == servers

    third = policies_import(document=document(mcp_servers=[]), actor="test")  # an empty list: none
    assert "mcp_servers" not in PolicyVersion.objects.get(number=third).document
    assert mcp_servers_current() == {}
