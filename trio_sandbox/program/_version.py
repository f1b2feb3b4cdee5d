"""The package's version, in the one place it is written (pyproject.toml reads it from here).

A constant, not ``importlib.metadata``: the tool server inside the sandbox sees the package
directory only (no dist-info), and a metadata lookup scans sys.path at every start.
"""

VERSION = "0.1.0"
