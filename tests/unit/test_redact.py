"""The secret scrubber: which settings are secrets, and every form in which text echoes them."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.redact import _SECRET_PART, MASK, Redactor, looks_secret, secret_values

ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5+/0123456789=="
CONNECTION = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY}"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AUTOPILOT_FUNCTION_KEYS", True),
        ("AUTOPILOT_KEY", True),
        ("AUTOPILOT_TABLE_CONNECTION_STRING", True),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", True),
        ("AZURE_CLIENT_SECRET", True),
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("STORAGE_SAS", True),
        ("AzureWebJobsStorage", True),
        ("IDENTITY_HEADER", True),
        ("MY_APIKEY", True),
        ("PATH", False),
        ("HOME", False),
        ("AUTOPILOT_POLICY", False),
        ("AUTOPILOT_TABLE_ENDPOINT", False),
        ("TOKENIZERS_PARALLELISM", False),
    ],
)
def test_which_setting_names_are_secrets(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_secret_values_of_an_environment() -> None:
    env = {
        "AUTOPILOT_FUNCTION_KEYS": "ops=key-one-0123456789, ci = key-two-0123456789",
        "SOME_STORAGE": CONNECTION,  # not secret-named, but shaped like a connection string
        "MY_TOKEN": "short",  # too short to be a secret worth masking everywhere
        "AUTOPILOT_POLICY": "examples/policy.yaml",
    }
    values = secret_values(env, extra=["generated-key-0123456789"])
    assert "key-one-0123456789" in values and "key-two-0123456789" in values
    assert CONNECTION in values and ACCOUNT_KEY in values
    assert "generated-key-0123456789" in values
    assert "short" not in values and "examples/policy.yaml" not in values


def test_every_form_of_a_secret_is_masked_and_the_rest_kept() -> None:
    scrub = Redactor.from_env({"AUTOPILOT_TABLE_CONNECTION_STRING": CONNECTION})
    texts = [
        f"connecting with {CONNECTION}",
        f"key {ACCOUNT_KEY} refused",
        f"url-encoded {quote(ACCOUNT_KEY, safe='')}",
        f"json {json.dumps({'conn': CONNECTION})}",
        "an unconfigured one: AccountKey=abcdefghij0123456789; and ?sv=1&sig=sas-signature-xyz",
    ]
    for text in texts:
        cleaned = scrub.text(text)
        assert MASK in cleaned
        for secret in (ACCOUNT_KEY, quote(ACCOUNT_KEY, safe=""), "abcdefghij0123", "sas-signature"):
            assert secret not in cleaned
    assert scrub.text(f"key {ACCOUNT_KEY} refused") == f"key {MASK} refused"
    assert scrub.text("nothing secret here: exit code 1") == "nothing secret here: exit code 1"


def test_json_values_are_scrubbed_however_deeply_nested() -> None:
    scrub = Redactor(["top-secret-value-1"])
    deep: object = "top-secret-value-1"
    for _ in range(5000):  # far past the recursion limit
        deep = {"k": [deep]}
    cleaned = scrub.json({"top-secret-value-1": deep, "n": 1, "none": None, "flag": True})
    node = cleaned[MASK]
    for _ in range(5000):
        node = node["k"][0]
    assert node == MASK
    assert cleaned["n"] == 1 and cleaned["none"] is None and cleaned["flag"] is True


def test_masking_that_joins_text_into_the_secret_again_masks_that_too() -> None:
    secret = "***aaaaa"  # masking "***aaaaa" in "***aaaaaaaaaa" leaves "***aaaaa" again
    redactor = Redactor([secret])
    masked = redactor.text("***aaaaaaaaaa")
    assert secret not in masked and not redactor.holds_secret(masked)


def test_every_form_of_a_secret_with_control_characters_or_a_lone_surrogate() -> None:
    secret = "multi\nline\x1b-secret\ud800"  # an environment can hold undecodable bytes
    redactor = Redactor([secret])  # percent-encoding a lone surrogate must not raise
    escaped_in_a_log_line = "multi\\nline\\x1b-secret\\ud800"  # as shared.log_escape writes it
    for form in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], escaped_in_a_log_line):
        assert redactor.text(f"<{form}>") == f"<{MASK}>", form


# pieces of credential parts, their case-insensitive look-alikes, delimiters, any character
NAMES = ["key", "KEY", "Sig", "\u017fig", "s\u0131g", "\u212aey", "AccountKey", "pwd", "Token"]
OTHERS = ["code", "api-version", "=", "=", "&", ";", " ", "x", "\u0130", "\u00e9"]
PIECES = st.sampled_from(NAMES + OTHERS) | st.characters(min_codepoint=0, max_codepoint=0x10FFFF)


@settings(max_examples=500, deadline=None)
@given(st.lists(PIECES, max_size=12).map("".join))
def test_credential_parts_are_masked_exactly_where_their_pattern_matches(text: str) -> None:
    """The quick look for a credential part before the pattern runs never misses one."""
    assert Redactor().text(text) == _SECRET_PART.sub(lambda m: f"{m.group(1)}={MASK}", text)
