"""Each required kind of secret is found (with fake, clearly-test values), and ordinary output
comes through unchanged."""

from __future__ import annotations

import base64
import json
import random
import re
import uuid
from collections.abc import Callable

import pytest

from tests.redact import redact_fakes as fakes
from trio_sandbox.redact import PLACEHOLDER, SecretRedactor


@pytest.fixture
def redactor() -> SecretRedactor:
    return SecretRedactor()


def rules_of(redacted: str) -> list[str]:
    return [match.group(1) for match in PLACEHOLDER.finditer(redacted)]


def assert_redacted(redactor: SecretRedactor, text: str, secret: str, rule: str) -> str:
    redacted = redactor.redact_text(text)
    assert secret not in redacted
    assert rule in rules_of(redacted), redacted
    assert redactor.restore_text(redacted) == text
    return redacted


RNG_SEEDS = [1, 2, 3]


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_aws_access_key_id_and_secret_key(redactor: SecretRedactor, seed: int) -> None:
    rng = random.Random(seed)
    key_id, secret = fakes.aws_access_key_id(rng), fakes.aws_secret_access_key(rng)
    text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    redacted = assert_redacted(redactor, text, key_id, "aws-access-token")
    assert secret not in redacted
    assert redacted.startswith("[default]\naws_access_key_id = [REDACTED_SECRET:aws-access-token:")
    # The key id alone, in a log line, is still found by its shape.
    assert_redacted(redactor, f"using credentials {key_id} from env", key_id, "aws-access-token")


def test_aws_documentation_example_key_is_allowed(redactor: SecretRedactor) -> None:
    # gitleaks' rule allowlist: AWS's own documentation key ends in EXAMPLE.
    text = "aws_access_key_id=AKIAIOSFODNN7EXAMPLE"
    assert "AKIAIOSFODNN7EXAMPLE" in redactor.redact_text(text)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_gcp_service_account_json_private_key(redactor: SecretRedactor, seed: int) -> None:
    document, key = fakes.gcp_service_account_json(random.Random(seed))
    # As text (cat key.json): the key is JSON-escaped, \n as two characters.
    redacted = redactor.redact_text(document)
    escaped_body = key.splitlines()[1]
    assert escaped_body not in redacted
    assert "private-key" in rules_of(redacted)
    assert '"type": "service_account"' in redacted
    assert redactor.restore_text(redacted) == document
    # As a JSON value (a tool's structured result): the leaf holds the PEM itself.
    value = redactor.redact_json(json.loads(document))
    assert isinstance(value, dict)
    assert value["private_key"] != key
    assert PLACEHOLDER.fullmatch(str(value["private_key"]).strip())
    assert redactor.restore_json(value) == json.loads(document)


@pytest.mark.parametrize(
    "kind", ["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"]
)
def test_pem_private_key_whole_block(redactor: SecretRedactor, kind: str) -> None:
    key = fakes.pem_private_key(random.Random(7), kind)
    text = f"$ cat id_test\n{key}\n$ echo done\ndone\n"
    redacted = redactor.redact_text(text)
    # BEGIN to END is one placeholder: no line of the key is left.
    assert re.fullmatch(
        r"\$ cat id_test\n\[REDACTED_SECRET:private-key:[0-9a-f]{12}\]\n\$ echo done\ndone\n",
        redacted,
    ), redacted
    assert redactor.restore_text(redacted) == text


def test_azure_ad_client_secret(redactor: SecretRedactor) -> None:
    secret = fakes.azure_ad_client_secret(random.Random(4))
    assert_redacted(redactor, f'AZURE_CLIENT_SECRET="{secret}"', secret, "azure-ad-client-secret")


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (fakes.github_pat, "github-pat"),
        (fakes.github_fine_grained_pat, "github-fine-grained-pat"),
        (fakes.gitlab_pat, "gitlab-pat"),
        (fakes.slack_bot_token, "slack-bot-token"),
        (fakes.stripe_secret_key, "stripe-access-token"),
        (fakes.openai_api_key, "openai-api-key"),
        (fakes.anthropic_api_key, "anthropic-api-key"),
        (fakes.jwt, "jwt"),
    ],
)
@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_token_shapes(
    redactor: SecretRedactor, make: Callable[[random.Random], str], rule: str, seed: int
) -> None:
    token = make(random.Random(seed))
    for text in (token, f"Authorization: Bearer {token}\n", f'{{"token": "{token}"}}'):
        redacted = assert_redacted(redactor, text, token, rule)
        assert rules_of(redacted) == [rule]


def test_github_token_in_a_remote_url(redactor: SecretRedactor) -> None:
    token = fakes.github_pat(random.Random(9))
    text = f"origin\thttps://x-access-token:{token}@github.example/org/repo.git (fetch)"
    assert_redacted(redactor, text, token, "github-pat")


@pytest.mark.parametrize(
    "template",
    [
        "password={secret}",
        'DB_PASSWORD="{secret}"',
        "secret: {secret}",
        "client_secret = '{secret}'",
        "api_key={secret}",
        "  auth_token: {secret}\n",
        '{{"password": "{secret}"}}',
    ],
)
def test_generic_assignments_with_entropy(redactor: SecretRedactor, template: str) -> None:
    secret = fakes.generic_password(random.Random(11))
    text = template.format(secret=secret)
    redacted = assert_redacted(redactor, text, secret, "generic-api-key")
    # Only the value is replaced: the agent still sees which setting it was.
    assert redacted.split("[REDACTED_SECRET")[0] == text.split(secret)[0]


def test_generic_value_on_the_next_line_of_yaml(redactor: SecretRedactor) -> None:
    secret = fakes.generic_password(random.Random(12))
    assert_redacted(redactor, f"db:\n  password:\n    {secret}\n", secret, "generic-api-key")


@pytest.mark.parametrize(
    "text",
    [
        "password=changeme-changeme",  # low entropy
        "password=aaaaaaaaaaaaaaaa",
        "token: ${GITHUB_TOKEN}",  # a reference, not a value (global allowlist)
        "password: $DB_PASSWORD",
        "secret: {{ secrets.DEPLOY_KEY }}",
        "api_version=2024-10-01-preview",  # an api_version, not a key (rule allowlist)
        "primary_key=id",
    ],
)
def test_generic_rule_leaves_non_secrets(redactor: SecretRedactor, text: str) -> None:
    assert redactor.redact_text(text) == text


def _git_log(rng: random.Random) -> str:
    return "".join(
        f"commit {rng.randbytes(20).hex()}\nAuthor: Test Dev <dev@example.com>\n"
        f"Date:   Tue Nov 24 10:{minute:02d}:00 2026 +0100\n\n"
        f"    Fix token refresh in the auth module (key rotation)\n\n"
        for minute in range(20)
    )


ORDINARY_OUTPUT = {
    "git log": _git_log(random.Random(1)),
    "git log --oneline": "\n".join(
        f"{random.Random(i).randbytes(4).hex()[:7]} Merge pull request #{i} from dev/key-cache"
        for i in range(30)
    ),
    "uuids": "\n".join(
        f"job {i}: id={uuid.UUID(int=random.Random(i).getrandbits(128))} status=done"
        for i in range(30)
    ),
    "sha256sum": "\n".join(
        f"{random.Random(i).randbytes(32).hex()}  dist/pkg-{i}.tar.gz" for i in range(30)
    ),
    "docker digests": "\n".join(
        f"docker.io/library/python@sha256:{random.Random(i).randbytes(32).hex()}\n"
        f"Digest: sha256:{random.Random(-i).randbytes(32).hex()}\n"
        f"Status: Downloaded newer image for python:3.11-slim"
        for i in range(10)
    ),
    "base64 in a build log": "\n".join(
        "[build] inlining asset logo.png as data:image/png;base64,"
        + base64.b64encode(random.Random(i).randbytes(90)).decode()
        for i in range(20)
    ),
    # A keyword inside base64, "=" padding, then a hash on the next line: not an assignment.
    "base64 then sha256sum": "data: AAAAG8etNewBfgD4DVEFHtTFh7+mZ8Vp5yxkTC0uFq4kx4qkeyicYeiNeVC"
    "EQ==\n"
    "fe22e24ae7a179210003d65bf6eee885d6f9496bb06b6c4db595da60fe99025f  dist/pkg.tar.gz\n",
    "empty assignments": "GITHUB_TOKEN=\nHOME_DIRECTORY_FOR_BUILDS=/home/dev/builds/x86_64\n",
    "pip install": """\
Collecting requests>=2.31
  Downloading requests-2.32.3-py3-none-any.whl.metadata (4.6 kB)
Collecting charset-normalizer<4,>=2 (from requests>=2.31)
  Using cached charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.whl (142 kB)
Collecting certifi>=2017.4.17 (from requests>=2.31)
  Downloading certifi-2024.8.30-py3-none-any.whl (167 kB)
     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 167.3/167.3 kB 4.1 MB/s eta 0:00:00
Requirement already satisfied: idna<4,>=2.5 in ./.venv/lib/python3.11/site-packages
Installing collected packages: charset-normalizer, certifi, requests
Successfully installed certifi-2024.8.30 charset-normalizer-3.4.0 requests-2.32.3
  Created wheel for keyring: filename=keyring-25.5.0-py3-none-any.whl size=39123 \
sha256=3b2f7a6c9d0e1f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2
""",
    "npm install": """\
npm WARN deprecated inflight@1.0.6: This module is not supported, and leaks memory.
npm WARN deprecated glob@7.2.3: Glob versions prior to v9 are no longer supported
added 248 packages, and audited 249 packages in 6s
57 packages are looking for funding
  run `npm fund` for details
found 0 vulnerabilities
npm notice New minor version of npm available! 10.8.2 -> 10.9.0
"integrity": "sha512-Xf3Cq1XzO0mJH6JPVnzKEqdJG2xjBQWo5JXUt8pvm4FzFGvvCL0zLEz6EGBrTaLk4Qyw09UdI5\
XpvXYCgTcdxg=="
""",
    "ls -l": """\
total 48
drwxr-xr-x  5 dev dev  4096 Nov 26 10:01 .
drwxr-xr-x 12 dev dev  4096 Nov 26 09:58 ..
-rw-r--r--  1 dev dev  1089 Nov 26 10:01 LICENSE
-rw-r--r--  1 dev dev  3301 Nov 26 10:01 README.md
-rw-------  1 dev dev   411 Nov 26 10:01 api_key_rotation.py
-rwxr-xr-x  1 dev dev 12044 Nov 26 10:01 build_tokens.sh
lrwxrwxrwx  1 dev dev    21 Nov 26 10:01 secrets.toml -> /etc/app/secrets.toml
""",
    "JSON document": """\
{
  "id": "3f1e8a52-6b1d-4c8e-9f0a-2d7c5b4e1a90",
  "name": "deploy-keys",
  "private": false,
  "tokens_used": 1832,
  "api_version": "2024-06-01",
  "auth": {"type": "oauth", "scopes": ["repo", "read:org"]},
  "public_key": "/keys/deploy.pub",
  "created_at": "2026-11-26T10:00:00Z",
  "etag": "W/\\"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3\\""
}
""",
    "pytest": """\
============================= test session starts ==============================
collected 12 items

tests/test_auth.py::test_token_refresh PASSED                           [  8%]
tests/test_auth.py::test_password_reset_link_expires PASSED             [ 16%]
tests/test_keys.py::test_key_rotation[rsa-2048] PASSED                  [ 25%]
========================= 12 passed in 0.42s =========================
""",
    "env without secrets": """\
PATH=/usr/local/bin:/usr/bin:/bin
HOME=/home/dev
LANG=C.UTF-8
TOKEN_URL=https://auth.example.com/oauth/token
PASSWORD_MIN_LENGTH=12
""",
}


@pytest.mark.parametrize("name", sorted(ORDINARY_OUTPUT))
def test_ordinary_output_comes_through_unchanged(redactor: SecretRedactor, name: str) -> None:
    text = ORDINARY_OUTPUT[name]
    assert redactor.redact_text(text) == text
