"""trio_sandbox: run MCP tool servers in a sandbox, behind a mutual-TLS proxy."""
