"""The errors of the shared helpers: the byte relay's, which its callers turn into their own
answers (an HTTP 400, a closed tunnel); none reaches a user as it is."""

from __future__ import annotations


class StreamEnded(Exception):
    """The peer closed its side before the bytes that had to come."""


class LineTooLong(Exception):
    """No delimiter within the allowed length."""


class CannotSplice(Exception):
    """splice(2) refused this pair of sockets before moving anything (the pump then copies)."""
