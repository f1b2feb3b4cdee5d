"""Fake secrets in the shapes real ones have (random bodies, never real credentials), and
hypothesis strategies that mix them into ordinary text."""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable

from hypothesis import strategies as st

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


def _pick(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


def aws_access_key_id(rng: random.Random) -> str:
    return "AKIA" + _pick(rng, string.ascii_uppercase + "234567", 16)


def aws_secret_access_key(rng: random.Random) -> str:
    return _pick(rng, ALNUM + "+/", 40)


def github_pat(rng: random.Random) -> str:
    return "ghp_" + _pick(rng, ALNUM, 36)


def github_fine_grained_pat(rng: random.Random) -> str:
    return "github_pat_" + _pick(rng, ALNUM + "_", 82)


def gitlab_pat(rng: random.Random) -> str:
    return "glpat-" + _pick(rng, URLSAFE, 20)


def slack_bot_token(rng: random.Random) -> str:
    digits = string.digits
    return f"xoxb-{_pick(rng, digits, 12)}-{_pick(rng, digits, 13)}-{_pick(rng, ALNUM, 24)}"


def stripe_secret_key(rng: random.Random) -> str:
    return "sk_test_" + _pick(rng, ALNUM, 48)


def openai_api_key(rng: random.Random) -> str:
    # gitleaks' rule ends the key at a word boundary: one ending in "-" is missed (a known gap).
    tail = _pick(rng, URLSAFE, 73) + rng.choice(ALNUM)
    return f"sk-proj-{_pick(rng, URLSAFE, 74)}T3BlbkFJ{tail}"


def anthropic_api_key(rng: random.Random) -> str:
    return f"sk-ant-api03-{_pick(rng, URLSAFE, 93)}AA"


def azure_ad_client_secret(rng: random.Random) -> str:
    return f"{_pick(rng, ALNUM, 3)}{rng.choice(string.digits)}Q~{_pick(rng, ALNUM + '_~.-', 34)}"


def jwt(rng: random.Random) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    payload = part({"sub": "test-user-" + _pick(rng, ALNUM, 8), "iat": rng.randrange(10**9)})
    return f"{header}.{payload}.{_pick(rng, URLSAFE, 43)}"


def pem_private_key(rng: random.Random, kind: str = "RSA PRIVATE KEY") -> str:
    body = base64.b64encode(rng.randbytes(rng.randrange(300, 900))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def gcp_service_account_json(rng: random.Random) -> tuple[str, str]:
    """(the key file's JSON text, the private key PEM inside it)."""
    key = pem_private_key(rng, "PRIVATE KEY") + "\n"
    document = {
        "type": "service_account",
        "project_id": "fake-test-project",
        "private_key_id": _pick(rng, "0123456789abcdef", 40),
        "private_key": key,
        "client_email": "fake-test@fake-test-project.iam.gserviceaccount.com",
        "client_id": _pick(rng, string.digits, 21),
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return json.dumps(document, indent=2), key


def generic_password(rng: random.Random) -> str:
    return _pick(rng, ALNUM, 20)


# Tokens that are secrets by their own shape, whatever surrounds them.
SELF_EVIDENT: dict[str, Callable[[random.Random], str]] = {
    "aws-access-token": aws_access_key_id,
    "github-pat": github_pat,
    "github-fine-grained-pat": github_fine_grained_pat,
    "gitlab-pat": gitlab_pat,
    "slack-bot-token": slack_bot_token,
    "stripe-access-token": stripe_secret_key,
    "openai-api-key": openai_api_key,
    "anthropic-api-key": anthropic_api_key,
    "jwt": jwt,
}


@st.composite
def self_evident_secret(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(sorted(SELF_EVIDENT)))
    return SELF_EVIDENT[kind](random.Random(draw(st.integers(0, 2**32))))


# Tokens whose rules need no delimiter after them, so that they can touch one another.
TOUCHABLE = ("github-pat", "github-fine-grained-pat", "gitlab-pat")


@st.composite
def touchable_secret(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(TOUCHABLE))
    return SELF_EVIDENT[kind](random.Random(draw(st.integers(0, 2**32))))


# Text around secrets: printable ASCII plus a little Unicode, with the separators that matter
# to the rules (spaces, newlines, quotes, '=' and ':').
filler_text = st.text(
    alphabet=st.sampled_from(
        [*(string.ascii_letters + string.digits + " \n\t=:'\"-_./,;"), "é", "━", "\u2028"]
    ),
    max_size=80,
)


@st.composite
def text_with_secrets(draw: st.DrawFn, known: list[str]) -> tuple[str, list[str]]:
    """Ordinary text with self-evident secrets and values from `known` mixed in; returns (text,
    the secrets put in). Known values may touch the text around them; the others have a
    delimiter on each side, as the rules require (``ghp_...x`` is no token's end)."""
    parts: list[str] = []
    secrets: list[str] = []
    delimiters = st.sampled_from([" ", "\n", '"', "'"])
    for _ in range(draw(st.integers(0, 5))):
        parts.append(draw(filler_text))
        if draw(st.booleans()) and known:
            parts.append(draw(st.sampled_from(["", " ", "=", "token: "])))
            secret = draw(st.sampled_from(known))
            parts.append(secret)
        else:
            parts.append(draw(st.sampled_from([" ", "\n", "=", '"', "token: "])))
            secret = draw(self_evident_secret())
            parts.extend([secret, draw(delimiters)])
        secrets.append(secret)
    parts.append(draw(filler_text))
    return "".join(parts), secrets
