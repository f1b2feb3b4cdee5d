"""The suite's plugins: the ordinary user's fixtures and the compiled secret rules."""

pytest_plugins = ["tests.support.sandbox_users", "tests.support.compiled_rules"]
