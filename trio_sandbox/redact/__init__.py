"""Secret redaction: secrets in text become ``[REDACTED_SECRET:<rule>:<id>]`` placeholders.

The detection rules are gitleaks' (vendored, MIT), translated from Go RE2 to Python ``re``
(ahead of time for the vendored set, shipped as ``gitleaks_rules.json``; each regex compiles
on first use) and prefiltered by their literals on Hyperscan where it is installed; values
the host already knows to be secret (generated passwords, secret environment variables) are
redacted wherever they appear. A :class:`SecretRedactor` keeps the map from
placeholders back to values in memory, so that placeholders in an agent's tool-call arguments
can be restored. This package depends on nothing else of trio_sandbox.

The rules and the redactor load on first use: the tool server inside the sandbox needs only
:data:`MIN_KNOWN_SECRET_LENGTH` (its passwords' shortest length), before its start-up line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..program import lazy_exports
from ._errors import MIN_KNOWN_SECRET_LENGTH as MIN_KNOWN_SECRET_LENGTH
from ._errors import KnownSecretTooShort as KnownSecretTooShort
from ._errors import PlaceholderError as PlaceholderError
from ._errors import RedactionError as RedactionError
from ._errors import RedactionTimeout as RedactionTimeout
from ._errors import RuleSetError as RuleSetError
from ._errors import UntranslatableRegex as UntranslatableRegex

if TYPE_CHECKING:
    from ._re2 import translate_re2 as translate_re2
    from ._redactor import MAX_JSON_DEPTH as MAX_JSON_DEPTH
    from ._redactor import PLACEHOLDER as PLACEHOLDER
    from ._redactor import JsonLike as JsonLike
    from ._redactor import JsonValue as JsonValue
    from ._redactor import SecretRedactor as SecretRedactor
    from ._rules import Allowlist as Allowlist
    from ._rules import Rule as Rule
    from ._rules import RuleSet as RuleSet
    from ._rules import SkippedRule as SkippedRule
    from ._rules import default_rules as default_rules
    from ._rules import default_rules_loaded as default_rules_loaded
    from ._rules import load_rules as load_rules
    from ._shapes import VENDOR_PREFIXES as VENDOR_PREFIXES
    from ._shapes import shaped_placeholder as shaped_placeholder

# The engine, loaded on first use: name -> module.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "translate_re2": "._re2",
        "MAX_JSON_DEPTH": "._redactor",
        "PLACEHOLDER": "._redactor",
        "JsonLike": "._redactor",
        "JsonValue": "._redactor",
        "SecretRedactor": "._redactor",
        "Allowlist": "._rules",
        "Rule": "._rules",
        "RuleSet": "._rules",
        "SkippedRule": "._rules",
        "default_rules": "._rules",
        "default_rules_loaded": "._rules",
        "load_rules": "._rules",
        "VENDOR_PREFIXES": "._shapes",
        "shaped_placeholder": "._shapes",
    },
)
