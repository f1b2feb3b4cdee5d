"""The redactor's errors, every one a user can meet: a rule set or known secret refused when it is
given, a value that could not be checked (not passed on).
"""

from __future__ import annotations

from typing import Final

from ..contract import SandboxError

# The shortest value redacted wherever it appears (a known secret, a value found before).
MIN_KNOWN_SECRET_LENGTH: Final = 8


class RedactionError(SandboxError):
    """A text or JSON value could not be checked for secrets; do not pass it on."""


class RedactionTimeout(RedactionError):
    """Scanning one text (or every string of one JSON value) took longer than the redactor
    allows. Python's regex engine backtracks, and some rules are slow on some texts (thousands
    of "curl" on one line): a text can be made slow to scan. The text was not redacted; do not
    pass it on."""


class KnownSecretTooShort(SandboxError, ValueError):
    """A value given as a known secret is shorter than ``MIN_KNOWN_SECRET_LENGTH``: it cannot
    be redacted wherever it appears without hiding ordinary text, so it is refused, never
    silently left in clear."""


class RuleSetError(SandboxError, ValueError):
    """A rule-set file that is not valid TOML or not shaped like a gitleaks configuration."""


class UntranslatableRegex(SandboxError, ValueError):
    """An RE2 pattern that has no Python ``re`` equivalent; the message says which part."""


class PlaceholderError(SandboxError, ValueError):
    """No placeholder of a secret's shape can be made for it (too few letters or digits to
    replace); the message gives its length, never the value."""
