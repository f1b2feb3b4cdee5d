"""Translate Go RE2 regular expressions (the syntax of gitleaks rules) into Python ``re`` syntax.

The two dialects mostly agree. What differs, and is rewritten here:

- ``(?i)`` in the middle of a pattern sets flags up to the end of the enclosing group in RE2;
  Python only accepts flag groups at the very start. It becomes a scoped ``(?i:...)`` closed at
  the end of the group and re-opened after each ``|`` of that group.
- ``$`` without ``(?m)`` is the end of the text in RE2 (``\\z``); Python's ``$`` also matches
  before a final newline. ``\\z`` does not exist in Python (``\\Z`` is its spelling).
- POSIX classes (``[[:alnum:]]``), ``\\Q...\\E`` literals, ``\\x{...}`` and octal escapes.
- ``{`` that does not start a valid repetition (``{,3}``, ``{x}``) is a literal in RE2.
- Character classes are re-emitted with every punctuation character escaped, so Python neither
  warns about a possible future set syntax (``[[``, ``--``, ``&&``) nor reads it differently.

Patterns are compiled with ``re.ASCII``, which gives ``\\w``, ``\\d``, ``\\s`` and ``\\b`` RE2's
ASCII meaning. What cannot be expressed (Unicode classes ``\\p{...}``, the ungreedy flag ``U``,
``\\C``) raises :class:`UntranslatableRegex` with the reason.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from ._errors import UntranslatableRegex

FLAGS: Final = re.ASCII

_POSIX_CLASSES: Final = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
# Escapes whose meaning is the same in both dialects (class escapes, assertions, controls).
_SAME_ESCAPES: Final = frozenset("dDsSwWbBAafnrtv")
_CLASS_ESCAPES: Final = frozenset("dDsSwW")
_CONTROLS: Final = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_REPEAT: Final = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAG_GROUP: Final = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
_NAMED_GROUP: Final = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


@attrs.define(eq=False)
class _Group:
    # Flags in force inside this group; flag groups opened by a bare ``(?flags)`` in it.
    multiline: bool
    pending_scopes: list[str] = attrs.Factory(list)


@attrs.define(eq=False)
class _Translator:
    source: str
    pos: int = 0
    out: list[str] = attrs.Factory(list)

    def fail(self, why: str) -> UntranslatableRegex:
        return UntranslatableRegex(f"{why} at offset {self.pos} of {self.source!r}")

    def run(self) -> str:
        groups = [_Group(multiline=False)]
        src = self.source
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "\\":
                self.out.append(self.escape(in_class=False))
            elif ch == "[":
                self.out.append(self.char_class())
            elif ch == "(":
                self.open_group(groups)
            elif ch == ")":
                if len(groups) == 1:
                    raise self.fail("unbalanced ')'")
                self.out.append(")" * len(groups.pop().pending_scopes) + ")")
                self.pos += 1
            elif ch == "|":
                scopes = groups[-1].pending_scopes
                self.out.append(")" * len(scopes) + "|" + "".join(scopes))
                self.pos += 1
            elif ch == "$":
                self.out.append("$" if groups[-1].multiline else r"\Z")
                self.pos += 1
            elif ch == "{":
                self.out.append(self.brace())
            else:
                self.out.append(ch)
                self.pos += 1
        if len(groups) != 1:
            raise self.fail("missing ')'")
        self.out.append(")" * len(groups[0].pending_scopes))
        return "".join(self.out)

    def open_group(self, groups: list[_Group]) -> None:
        src = self.source
        current = groups[-1]
        if not src.startswith("(?", self.pos):
            groups.append(_Group(multiline=current.multiline))
            self.out.append("(")
            self.pos += 1
            return
        named = _NAMED_GROUP.match(src, self.pos)
        if named:
            groups.append(_Group(multiline=current.multiline))
            self.out.append(f"(?P<{named.group(1)}>")
            self.pos = named.end()
            return
        flag_group = _FLAG_GROUP.match(src, self.pos)
        if not flag_group:
            raise self.fail("unsupported group syntax (RE2 has no look-around)")
        on, off, end = flag_group.group(1), flag_group.group(2) or "", flag_group.group(3)
        if set(on + off) - set("ims"):
            raise self.fail(f"unsupported flags {on + off!r}")
        multiline = current.multiline
        if "m" in on:
            multiline = True
        if "m" in off:
            multiline = False
        scope = "(?" + on + ("-" + off if off else "") + ":"
        self.pos = flag_group.end()
        if end == ":":
            groups.append(_Group(multiline=multiline))
            self.out.append(scope)
        else:
            # A bare (?flags): in force until the end of the current group.
            current.multiline = multiline
            current.pending_scopes.append(scope)
            self.out.append(scope)

    def brace(self) -> str:
        repeat = _REPEAT.match(self.source, self.pos)
        if repeat is None:
            self.pos += 1
            return r"\{"
        self.pos = repeat.end()
        return repeat.group(0)

    def escape(self, *, in_class: bool) -> str:
        src = self.source
        if self.pos + 1 >= len(src):
            raise self.fail("trailing backslash")
        ch = src[self.pos + 1]
        self.pos += 2
        if ch == "z" and not in_class:
            return r"\Z"
        if ch == "Q" and not in_class:
            end = src.find(r"\E", self.pos)
            literal = src[self.pos :] if end < 0 else src[self.pos : end]
            self.pos = len(src) if end < 0 else end + 2
            return re.escape(literal)
        if ch == "x":
            return _escape_codepoint(self.hex_escape())
        if ch in "01234567":
            digits = re.match(r"[0-7]{0,2}", src[self.pos :])
            assert digits is not None
            if ch != "0" and not digits.group(0):
                raise self.fail("backreferences are not RE2")
            self.pos += len(digits.group(0))
            return _escape_codepoint(int(ch + digits.group(0), 8))
        if ch in "pP":
            raise self.fail("Unicode classes are not translated")
        if ch in _SAME_ESCAPES:
            if in_class and ch not in _CLASS_ESCAPES and ch not in "afnrtv":
                raise self.fail(f"\\{ch} inside a class")
            return "\\" + ch
        if ch.isascii() and ch.isalnum():
            raise self.fail(f"unknown escape \\{ch}")
        return re.escape(ch)

    def hex_escape(self) -> int:
        src = self.source
        if src.startswith("{", self.pos):
            end = src.find("}", self.pos)
            digits = src[self.pos + 1 : end] if end > 0 else ""
            self.pos = end + 1
        else:
            digits = src[self.pos : self.pos + 2]
            self.pos += 2
        if not digits or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
            raise self.fail("bad \\x escape")
        return int(digits, 16)

    def char_class(self) -> str:
        src = self.source
        self.pos += 1
        negate = src.startswith("^", self.pos)
        if negate:
            self.pos += 1
        parts: list[str] = []
        first = True
        while True:
            if self.pos >= len(src):
                raise self.fail("missing ']'")
            if src[self.pos] == "]" and not first:
                self.pos += 1
                break
            first = False
            if src.startswith("[:", self.pos):
                end = src.find(":]", self.pos + 2)
                name = src[self.pos + 2 : end] if end > 0 else ""
                if name not in _POSIX_CLASSES:
                    raise self.fail(f"unknown or negated POSIX class {name!r}")
                parts.append(_POSIX_CLASSES[name])
                self.pos = end + 2
                continue
            low = self.class_atom()
            if (
                len(low) == 1
                and src.startswith("-", self.pos)
                and not src.startswith("-]", self.pos)
            ):
                self.pos += 1
                high = self.class_atom()
                if len(high) != 1 or ord(high) < ord(low):
                    raise self.fail("bad range in a class")
                parts.append(_class_char(low) + "-" + _class_char(high))
            else:
                parts.append(_class_char(low) if len(low) == 1 else low)
        return "[" + ("^" if negate else "") + "".join(parts) + "]"

    def class_atom(self) -> str:
        """One character of a class, or a class escape such as ``\\d`` (two characters)."""
        src = self.source
        ch = src[self.pos]
        if ch != "\\":
            self.pos += 1
            return ch
        if src[self.pos + 1 : self.pos + 2] in _CLASS_ESCAPES:
            self.pos += 2
            return src[self.pos - 2 : self.pos]
        return _unescape_single(self.escape(in_class=True))


def _escape_codepoint(code: int) -> str:
    if code > 0x10FFFF:
        raise UntranslatableRegex(f"code point {code:#x} out of range")
    return re.escape(chr(code))


def _unescape_single(escaped: str) -> str:
    """The one character that a one-character escape (``re.escape`` output, ``\\n``) stands for."""
    if len(escaped) == 1:
        return escaped
    if len(escaped) == 2 and escaped[0] == "\\":
        return _CONTROLS.get(escaped[1], escaped[1])
    raise UntranslatableRegex(f"unexpected class escape {escaped!r}")


def _class_char(ch: str) -> str:
    if ch.isascii() and ch.isalnum():
        return ch
    if ch.isascii() and ch.isprintable():
        return "\\" + ch
    for letter, control in _CONTROLS.items():
        if ch == control:
            return "\\" + letter
    return f"\\U{ord(ch):08x}"


def translate_re2(pattern: str) -> str:
    """The Python ``re`` spelling of an RE2 pattern, to compile with :data:`FLAGS`."""
    return _Translator(pattern).run()


def compile_translated(translated: str, pattern: str) -> re.Pattern[str]:
    """Compile what :func:`translate_re2` made of ``pattern``."""
    try:
        return re.compile(translated, FLAGS)
    except re.error as exc:
        raise UntranslatableRegex(f"{exc} in {translated!r} (from {pattern!r})") from None
