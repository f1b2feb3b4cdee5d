"""Checks shared by the WebSocket and stdio bad-input tests: both carry one JSON-RPC message (or
a 2025-03-26 batch) per frame or line, so the same accounting applies to what comes back."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tests.mcp.mcp_fuzz_support import check_outgoing_message, readable_id
from trio_sandbox.mcp import PARSE_ERROR


def _is_request(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and bool(item["method"])
        and readable_id(item) is not None
        and (item.get("params") is None or isinstance(item["params"], dict))
        and "result" not in item
        and "error" not in item
    )


def check_duplex_answers(sent_in: list[bytes | str], sent_out: list[bytes | str]) -> None:
    """Every frame the server sent is a well-formed message; each unparseable frame got exactly
    one parse error; each request got an answer carrying its id, unless cancellation or a batch
    makes the accounting ambiguous; nothing answers an id nobody sent."""
    out = [check_outgoing_message(frame) for frame in sent_out]
    answers = [message for message in out if "method" not in message]

    unparseable = 0
    request_ids: Counter[int | str] = Counter()
    known_ids: set[int | str] = set()
    exact = True
    for frame in sent_in:
        try:
            raw = json.loads(frame)
        except (ValueError, RecursionError):
            unparseable += 1
            continue
        items = raw if isinstance(raw, list) else [raw]
        if isinstance(raw, list):
            exact = False
        for item in items:
            request_id = readable_id(item)
            if request_id is not None:
                known_ids.add(request_id)
            if isinstance(item, dict) and item.get("method") == "notifications/cancelled":
                exact = False
            if _is_request(item) and request_id is not None:
                request_ids[request_id] += 1

    parse_errors = [
        answer for answer in answers if "error" in answer and answer["error"]["code"] == PARSE_ERROR
    ]
    assert len(parse_errors) == unparseable, (parse_errors, unparseable)
    assert all(answer["id"] is None for answer in parse_errors)
    answered: Counter[int | str] = Counter(
        answer["id"] for answer in answers if answer["id"] is not None
    )
    assert set(answered) <= known_ids, (answered, known_ids)
    if exact:
        # A duplicate id in flight is refused, which is an answer too.
        for request_id in request_ids:
            assert answered[request_id] >= 1, (request_id, out)
