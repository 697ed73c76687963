"""The MCP gateway (contract §6.4): agents' MCP clients connect to /mcp; every tools/call is
proposed, decided, then forwarded to the upstream server or refused."""
