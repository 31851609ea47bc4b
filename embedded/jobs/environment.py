"""A job's environment: the allow-listed basics, the policy's variables, never the service's
secrets."""

from __future__ import annotations

import re
from collections.abc import Mapping

# What a job takes from the service's environment without the policy asking: enough to run
# Python (and its numeric libraries) in the same locale, nothing that could hold a credential.
BASE_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "SYSTEMROOT",  # Windows: Python cannot start without it
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
    }
)
BASE_ENV_PREFIXES = ("LC_", "OMP_", "OPENBLAS_", "MKL_")


def env_name(input_name: str) -> str:
    return "AUTOPILOT_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", input_name).upper()


def job_environment(
    service_env: Mapping[str, str], declared: Mapping[str, str | None]
) -> dict[str, str]:
    """The allow-listed part of the service's environment plus what the policy declares."""
    env = {k: v for k, v in service_env.items() if k in BASE_ENV or k.startswith(BASE_ENV_PREFIXES)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # offline: no usage telemetry
    for name, value in declared.items():
        if value is not None:
            env[name] = value
        elif name in service_env:
            env[name] = service_env[name]
    return env
