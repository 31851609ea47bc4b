"""``autopilot serve`` and ``autopilot replay``: the function app on one machine, offline.

The local host serves exactly the functions ``function_app`` registers, with the Functions
host's URL shapes; the embedded platform posts its Azure-ML-shaped events back to the Event
Grid webhook, so the offline loop goes through the same intake code as Azure.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopilot.state_files import check_state_files
from shared.errors import BadEvent, SettingsError
from shared.settings import DEFAULT_RECONCILE_SCHEDULE, parse_keys

if TYPE_CHECKING:
    from composition.wiring import Runtime

log = logging.getLogger("autopilot.serve")

EVENTGRID_FUNCTION = "azureml_events"
KEY_FILE = "function_keys.json"
SERVE_MARKER = "serve.json"  # written by `autopilot serve` once bound, removed on exit


def eventgrid_path(function: str = EVENTGRID_FUNCTION) -> str:
    return f"/runtime/webhooks/eventgrid?functionName={function}"


def load_or_create_keys(data_dir: Path, env: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """Keys from AUTOPILOT_FUNCTION_KEYS, else the data folder's, else a new one (True).

    A new key is only made here, not written: ``store_new_keys`` writes it once the port is
    bound, so a start that fails leaves nothing behind.
    """
    keys = parse_keys(env.get("AUTOPILOT_FUNCTION_KEYS", ""))
    if keys:
        return keys, False
    path = data_dir / KEY_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            return {str(k): str(v) for k, v in stored.items()}, False
        except (ValueError, AttributeError) as exc:
            raise SettingsError(
                f"{path} is not a valid key file; delete it to make a new one"
            ) from exc
    return {"local": secrets.token_urlsafe(32)}, True


def store_new_keys(data_dir: Path, keys: Mapping[str, str]) -> None:
    """Write a newly made key file (owner-only); refuse if another process made one first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SettingsError(
            f"{path} was created by another process while this one started; start again"
        ) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(keys), handle)


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise SettingsError(f"--port must be 0-65535 (0 picks a free port), got {port}")


def check_host(host: str) -> None:
    """An empty --host would listen on every interface: say so instead of doing it silently
    (listening everywhere stays possible, explicitly, with 0.0.0.0)."""
    if not host.strip():
        raise SettingsError(
            "--host is empty, which would listen on every interface; check --host: "
            "an IPv4 address or name of this machine, e.g. 127.0.0.1 (0.0.0.0 for all)"
        )


def event_batch_validator(
    policy_getter: Callable[[], Any],
) -> Callable[[bytes], list[dict[str, Any]]]:
    """Validate a whole delivery (envelopes and Azure ML data) before any event is applied."""
    from shared.envelope import envelope_from_dict, parse_delivery
    from shared.normalise import normalise_azureml

    def parse(body: bytes) -> list[dict[str, Any]]:
        events = parse_delivery(body)
        if any(
            e.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent" for e in events
        ):
            return events
        policy = policy_getter()
        for index, event in enumerate(events):
            try:
                normalise_azureml(envelope_from_dict(event, index), policy)
            except BadEvent as exc:
                raise BadEvent(f"event [{index}]: {exc}") from exc
        return events

    return parse


@dataclass
class LocalService:
    """A started local host with the app's runtime wired to the embedded platform."""

    host: Any
    keys: dict[str, str]
    data_dir: Path

    @property
    def url(self) -> str:
        return str(self.host.url)

    @property
    def key(self) -> str:
        return next(iter(self.keys.values()))

    def stop(self, *, leave_jobs_running: bool = False) -> None:
        """Stop serving; ``leave_jobs_running`` leaves training jobs to the next start."""
        from functions import runtime

        self.host.stop()
        try:
            platform = runtime.current().services.platform
            close = getattr(platform, "close", None)
            if close and leave_jobs_running:
                close(leave_jobs_running=True)
            elif close:
                close()
        finally:
            runtime.use(None)


@dataclass(frozen=True, slots=True)
class TimerWakeups:
    """``Wakeups`` of the embedded service: a one-shot run of the local host's reconcile
    timer at the time asked (the Functions host on Azure has no such thing)."""

    wake: Callable[[str, datetime], None]
    timer: str = "reconcile"

    def at(self, when: datetime, why: str) -> None:
        log.info("reconcile requested at %s: %s", when.isoformat(), why)
        self.wake(self.timer, when)


def start_service(
    *,
    policy: Path,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    run_timers: bool = True,
    env: Mapping[str, str] | None = None,
    resume: bool = True,
) -> tuple[LocalService, bool]:
    """Start the local host in background threads. Returns (service, key_was_generated).

    ``resume``: adopt the training jobs and serve again the endpoints a previous process on
    ``data_dir`` left (a short-lived in-process use, such as ``replay``, passes False).
    """
    import function_app
    from autopilot.host import LocalHost
    from functions import runtime
    from shared.policy import load_policy

    env = dict(os.environ if env is None else env)
    env.setdefault("AUTOPILOT_RECONCILE_SCHEDULE", DEFAULT_RECONCILE_SCHEDULE)
    env["AUTOPILOT_POLICY"] = str(policy)
    env["AUTOPILOT_DATA_DIR"] = str(data_dir)
    # Everything that can be refused is checked before the port is bound, and nothing is
    # written to the data folder until it is.
    check_port(port)
    check_host(host)
    load_policy(policy)
    check_state_files(data_dir)
    keys, generated = load_or_create_keys(data_dir, env)
    local_host: Any = None
    make_runtime = _runtime_factory(data_dir, env, keys, lambda: local_host)
    try:  # bad timer schedules and time zones (settings) are refused here, before binding
        local_host = LocalHost(
            function_app.app,
            keys=keys,
            on_reject=_audit_rejection(),
            settings=env,
            parse_event_batch=event_batch_validator(lambda: runtime.current().services.policy),
            run_timers=run_timers,
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    runtime.use(make_runtime)
    _listen(local_host, host, port)
    try:
        if generated:
            store_new_keys(data_dir, keys)
        services = runtime.current().services  # build adapters now, not in the first request
        resume_platform = getattr(services.platform, "resume", None)
        if resume and callable(resume_platform):
            resume_platform()  # adopt jobs a previous process started; serve endpoints again
    except BaseException:
        local_host.stop()
        runtime.use(None)
        raise
    return LocalService(local_host, keys, data_dir), generated


def _runtime_factory(
    data_dir: Path, env: Mapping[str, str], keys: dict[str, str], host: Callable[[], Any]
) -> Callable[[], Runtime]:
    """What builds the runtime on first use: the embedded platform posting its events to
    ``host``'s webhook, with chaos (``AUTOPILOT_EMBEDDED_CHAOS``) wired on top."""
    from autopilot.faults import chaos_wrapper
    from composition.wiring import Runtime, build_services, embedded_platform
    from shared.redact import Redactor
    from shared.settings import AppSettings

    settings = AppSettings.from_env({**env, "AUTOPILOT_FUNCTION_KEYS": ""})
    redactor = Redactor.from_env(env, keys.values())  # generated keys are secrets too

    def make_runtime() -> Runtime:
        platform, metrics = embedded_platform(
            data_dir,
            webhook=(host().url + eventgrid_path(), next(iter(keys.values()))),
            wrap_sink=chaos_wrapper(env.get("AUTOPILOT_EMBEDDED_CHAOS", "")),
            redactor=redactor,
        )
        services = build_services(settings, platform=platform, metrics=metrics, redactor=redactor)
        # a rollout step is checked when its bake ends, not at the timer's next tick
        services.wakeups = TimerWakeups(lambda name, at: host().wake(name, at))
        return Runtime(services, keys)

    return make_runtime


def _audit_rejection() -> Callable[[str, str], None]:
    """The host's ``on_reject``: a refused delivery is audited, one at a time."""
    from functions import runtime
    from shared.model import AuditKind

    lock = threading.Lock()

    def on_reject(function: str, message: str) -> None:
        with lock:
            runtime.current().services.record(
                AuditKind.REJECTED, f"{function}: delivery rejected", reason=message
            )

    return on_reject


def _listen(local_host: Any, host: str, port: int) -> None:
    """Bind and serve, or a ``SettingsError`` that says what to change."""
    from functions import runtime

    try:
        local_host.start(host, port)
    except OSError as exc:
        runtime.use(None)
        reason = exc.strerror or str(exc)
        advice = (
            "choose another --port (0 picks a free one)"
            if exc.errno in (errno.EADDRINUSE, errno.EACCES)
            else "check --host: an IPv4 address or name of this machine, e.g. 127.0.0.1"
        )
        raise SettingsError(f"cannot listen on {host}:{port}: {reason}; {advice}") from exc


def serve(*, host: str, port: int, policy: Path, data_dir: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    service, generated = start_service(policy=policy, data_dir=data_dir, host=host, port=port)
    print(f"MLOps Autopilot serving {service.url}  (policy {policy}, data {data_dir})")
    print(f"  Event Grid webhook: POST {service.url}{eventgrid_path()}")
    print(f"  Alerts:             POST {service.url}/api/alerts")
    print(f"  API:                GET  {service.url}/api/cycles | /api/audit | /api/health")
    print(f"  Console:            GET  {service.url}/api/console (function key in the code query)")
    if generated:
        name, key = next(iter(service.keys.items()))
        print(
            f"  Generated function key {name!r} (shown once; stored in "
            f"{data_dir / KEY_FILE}): {key}"
        )
    else:
        print(f"  Function keys: {', '.join(service.keys)} (send as x-functions-key)")
    sys.stdout.flush()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())  # stop as on Ctrl-C
    try:  # a Ctrl-C right after the marker is written still removes it
        write_serve_marker(data_dir, service.url)
        while not stopping.wait(3600):
            pass
        print("stopping ...")
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        remove_serve_marker(data_dir / SERVE_MARKER)  # only if it is still ours (its pid)
        service.stop(leave_jobs_running=True)  # a restart adopts them: no cycle fails
    return 0


def write_serve_marker(data_dir: Path, url: str) -> Path:
    """Tell CLI commands on this data folder where the running service listens (pid, URL)."""
    path = data_dir / SERVE_MARKER
    tmp = path.with_name(f".{SERVE_MARKER}.{os.getpid()}")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    os.replace(tmp, path)
    return path


def remove_serve_marker(path: Path) -> None:
    """Remove the marker on exit, unless another service has replaced it since."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def post_json(url: str, key: str, body: bytes, timeout: float = 30.0) -> tuple[int, str]:
    if not url.startswith(("http://", "https://")):
        raise BadEvent(f"--url must be an http(s) URL, got {url!r}")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "x-functions-key": key,
            "aeg-event-type": "Notification",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
