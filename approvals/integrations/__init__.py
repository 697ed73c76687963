"""What the gate sends to the world outside: signed webhook deliveries (later e-mail, Slack, MCP)."""
