"""Scrub configured secrets out of text before it is stored or served.

Text that comes from a training job (its stderr tail, error messages, an Azure ML job's
error) may echo a secret. :class:`Redactor` knows every secret value of the service's settings
and replaces each occurrence (also percent-encoded or JSON-escaped) with ``***``. Secrets are:
the function keys, any setting whose name looks secret (``*KEY*``, ``*SECRET*``, ``*TOKEN*``,
``*PASSWORD*``, ``*CONNECTION_STRING*``, ``*SAS*``, ...), any value shaped like a connection
string, and the ``AccountKey`` / ``SharedAccessKey`` / ``SharedAccessSignature`` / ``sig``
parts of those. Credential-shaped ``name=value`` parts (``AccountKey=``, ``sig=``, ``key=``,
``code=``, ``token=``, ``password=``, ...) are masked even when their value is not a setting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from shared.log_escape import escape

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values of secret-named settings ("1", "true") are not secrets

_SECRET_WORDS = (
    "KEY",
    "KEYS",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "SAS",
    "CREDENTIAL",
    "CREDENTIALS",
    "SIGNATURE",
    "CONNECTIONSTRING",
)
_SECRET_NAMES = frozenset({"IDENTITY_HEADER", "MSI_SECRET", "AZUREWEBJOBSSTORAGE"})
# name=value parts of connection strings and SAS query strings that are credentials
_PART_NAMES = (
    "AccountKey|SharedAccessKey|SharedAccessSignature|sig|key|code|token|secret|password|pwd"
)
_SECRET_PART = re.compile(rf"(?i)({_PART_NAMES})=([^;&\s\"'<>]+)")
# Whether a text holds one is asked of every log line, and most hold an "=" but no credential:
# only the few characters before each "=" are looked at. (Searching the whole text with the
# case-insensitive alternation costs ~70 us for an SDK's 160-character request line.)
_PART_NAME_END = re.compile(rf"(?i)(?:{_PART_NAMES})\Z")
_PART_NAMES_LOWER = tuple(name.lower() for name in _PART_NAMES.split("|"))
_PART_NAME_CHARS = max(len(name) for name in _PART_NAMES_LOWER)


def _may_hold_part(value: str) -> bool:
    """Whether a credential part's name ends right before an ``=`` in ``value``."""
    at = value.find("=")
    while at != -1:
        before = value[max(0, at - _PART_NAME_CHARS) : at]
        if before.isascii():  # ASCII: the regex's case-insensitive match is str.lower's
            if before.lower().endswith(_PART_NAMES_LOWER):
                return True
        elif _PART_NAME_END.search(before):  # long-s "sig", Kelvin-sign "Key", as the regex
            return True
        at = value.find("=", at + 1)
    return False


def looks_secret(name: str) -> bool:
    """True for a setting name that holds a credential (``AUTOPILOT_FUNCTION_KEYS``,
    ``AZURE_CLIENT_SECRET``, ``AUTOPILOT_TABLE_CONNECTION_STRING``, ``MY_API_TOKEN``)."""
    upper = name.upper()
    if upper in _SECRET_NAMES or "CONNECTION_STRING" in upper:
        return True
    words = [w for w in re.split(r"[^A-Z0-9]+", upper) if w]
    return any(w.endswith(s) for w in words for s in _SECRET_WORDS)


def _parts(value: str) -> list[str]:
    """The credential parts inside a connection string or SAS token."""
    return [m.group(2) for m in _SECRET_PART.finditer(value)]


def secret_values(env: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    """Every secret value in ``env`` (plus ``extra``, e.g. generated function keys)."""
    found: list[str] = [v for v in extra if v]
    for name, value in env.items():
        if not isinstance(value, str) or not value.strip():
            continue
        if name.upper() == "AUTOPILOT_FUNCTION_KEYS":
            for item in value.split(","):
                found.append(item.partition("=")[2].strip())
        parts = _parts(value)
        if looks_secret(name) or parts:
            found.append(value.strip())
            found.extend(parts)
    return [v for v in found if len(v) >= MIN_SECRET_CHARS]


def _forms(secret: str) -> set[str]:
    """The secret as written, percent-encoded, JSON-escaped, ``repr``-escaped and log-escaped
    (:mod:`shared.log_escape`): how URLs, documents and log lines echo it."""
    return {
        secret,
        quote(secret, safe="", errors="surrogatepass"),  # a lone surrogate must not raise
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        escape(secret),
    }


class Redactor:
    """Replaces every known secret (longest first) and every credential part with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {f for s in secrets if len(s) >= MIN_SECRET_CHARS for f in _forms(s)}
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    @classmethod
    def from_env(cls, env: Mapping[str, str], extra: Iterable[str] = ()) -> Redactor:
        return cls(secret_values(env, extra))

    def _needs(self, value: str) -> bool:
        if any(form in value for form in self._forms):
            return True
        return _may_hold_part(value)

    def needs(self, value: str) -> bool:
        """True if :meth:`text` would change ``value`` (a secret or a credential part)."""
        return self._needs(value)

    def holds_secret(self, value: str) -> bool:
        """True if ``value`` holds a configured secret in any of its forms."""
        return any(form in value for form in self._forms)

    def _mask_forms(self, value: str) -> str:
        # Longest first: a secret inside a longer one goes with it. Masking can join text into
        # a secret again (its neighbours around the mask): repeat until none is left; every
        # pass that masks something shortens the text, so this ends.
        while True:
            before = value
            for form in self._forms:
                if form in value:
                    value = value.replace(form, MASK)
            if value == before:
                return value

    def text(self, value: str) -> str:
        """``value`` with every secret masked."""
        if not value or not self._needs(value):
            return value
        value = self._mask_forms(value)
        if "=" in value:
            value = _SECRET_PART.sub(lambda m: f"{m.group(1)}={MASK}", value)
            value = self._mask_forms(value)
        return value

    def json(self, value: Any) -> Any:
        """A JSON value (dicts, lists, strings) with every string masked, keys too, and every
        number JSON cannot hold (NaN, +-Infinity: a platform's metric, a job's document) as
        null; the value itself when nothing needs either. Never recursive: any depth is fine."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if not isinstance(value, dict | list | tuple):
            return value
        try:  # one pass in C tells whether anything needs a look
            text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
            if not self._needs(text):
                return value
        except (RecursionError, ValueError, TypeError):
            pass
        root: list[Any] = [None]
        stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
        while stack:
            item, parent, slot = stack.pop()
            if isinstance(item, str):
                parent[slot] = self.text(item)
            elif isinstance(item, dict):
                copy: dict[Any, Any] = {}
                parent[slot] = copy
                for key, child in item.items():
                    new_key = self.text(key) if isinstance(key, str) else key
                    copy[new_key] = None
                    stack.append((child, copy, new_key))
            elif isinstance(item, list | tuple):
                items: list[Any] = [None] * len(item)
                parent[slot] = items
                stack.extend((child, items, index) for index, child in enumerate(item))
            elif isinstance(item, float) and not math.isfinite(item):
                parent[slot] = None
            else:
                parent[slot] = item
        return root[0]


NO_SECRETS = Redactor()
