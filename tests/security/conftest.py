"""The security suite: each test attacks the product as one of the four attackers of the threat
model in NOTES.md would (the code in the sandbox, a prompt-injected model driving the tools,
another MCP server behind the proxy, another local user), asserts that the attack fails, and that
the next call still works. Sandbox attacks run as root and as an ordinary user (``sandbox_user``).
"""
