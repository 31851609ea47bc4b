"""Local jobs are real subprocesses: placeholders, environment, status, timeout, cancel, events."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedded.events import AZUREML_TOPIC, ListEventSink
from embedded.platform import LocalMLPlatform
from shared.errors import AlreadyExists, NotFound, PermanentError
from shared.model import JobInfo, JobRequest, JobStatus
from tests.embedded.conftest import ROOT, wait_until

PY = "{python}"


@pytest.fixture(scope="module")
def sink() -> ListEventSink:
    return ListEventSink()


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, sink: ListEventSink
) -> Iterator[LocalMLPlatform]:
    """One platform for the module: its MLflow database is created once (a few seconds)."""
    data_dir = tmp_path_factory.mktemp("jobs-platform")
    platform = LocalMLPlatform(data_dir, event_sink=sink, code_dir=ROOT)
    yield platform
    platform.close()


def request(name: str, code: str, *, timeout_s: float = 60.0, **inputs: object) -> JobRequest:
    return JobRequest(
        name=name,
        model="demo",
        experiment="jobs-test",
        command=(PY, "-c", code, "{outputs}", *(f"{{inputs.{k}}}" for k in inputs)),
        inputs=dict(inputs),
        tags={"autopilot_cycle": f"cycle-{name}", "team": "ml"},
        timeout_s=timeout_s,
    )


def finished(platform: LocalMLPlatform, name: str, timeout: float = 30.0) -> JobInfo:
    assert wait_until(lambda: platform.get_job(name).status.is_terminal, timeout)
    return platform.get_job(name)


def test_job_runs_with_placeholders_and_environment(platform: LocalMLPlatform) -> None:
    code = (
        "import json, os, sys, pathlib; "
        "out = pathlib.Path(sys.argv[1]); "
        "env = {k: v for k, v in os.environ.items() if k.startswith(('AUTOPILOT_', 'MLFLOW_T'))}; "
        "(out / 'seen.json').write_text(json.dumps({'argv': sys.argv[1:], 'env': env, "
        "'cwd': os.getcwd()}))"
    )
    info = platform.submit_job(request("job-env", code, data_dir="examples", alpha=0.5))
    assert info.status is JobStatus.QUEUED
    assert finished(platform, "job-env").status is JobStatus.COMPLETED
    job_dir = platform.job_dir("job-env")
    seen = json.loads((job_dir / "outputs" / "seen.json").read_text())
    assert seen["argv"] == [str(job_dir / "outputs"), str(ROOT / "examples"), "0.5"]
    assert seen["cwd"] == str(job_dir)
    env = seen["env"]
    assert env["AUTOPILOT_JOB_NAME"] == "job-env"
    assert env["AUTOPILOT_OUTPUT_DIR"] == str(job_dir / "outputs")
    assert env["AUTOPILOT_EXPERIMENT"] == "jobs-test"
    assert env["AUTOPILOT_INPUT_DATA_DIR"] == str(ROOT / "examples")
    assert env["AUTOPILOT_INPUT_ALPHA"] == "0.5"
    assert env["MLFLOW_TRACKING_URI"] == platform.tracking_uri
    assert platform.tracking_uri.startswith("sqlite:////")
    assert platform.get_job("job-env").tags == {"autopilot_cycle": "cycle-job-env", "team": "ml"}
    assert (job_dir / "stdout.log").exists() and (job_dir / "stderr.log").exists()


def test_duplicate_name_is_refused_and_never_runs_twice(platform: LocalMLPlatform) -> None:
    code = (
        "import sys, pathlib; p = pathlib.Path(sys.argv[1]).parent / 'runs.txt'; "
        "f = open(p, 'a'); f.write('ran\\n'); f.close()"
    )
    outcomes: list[str] = []

    def submit() -> None:
        try:
            platform.submit_job(request("job-once", code))
            outcomes.append("submitted")
        except AlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exists"] * 7 + ["submitted"]
    assert finished(platform, "job-once").status is JobStatus.COMPLETED
    # another process sharing the data folder is refused too
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[2]); "
        "from embedded.platform import LocalMLPlatform; from shared.model import JobRequest; "
        "from shared.errors import AlreadyExists\n"
        "try:\n"
        "    LocalMLPlatform(Path(sys.argv[1])).submit_job(JobRequest(name='job-once', "
        "model='demo', experiment='jobs-test', command=('{python}', '-c', 'pass')))\n"
        "except AlreadyExists:\n"
        "    sys.exit(17)\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(platform.data_dir), str(ROOT)], timeout=60
    )
    assert other.returncode == 17
    with pytest.raises(AlreadyExists):
        platform.submit_job(request("job-once", code))
    runs = (platform.job_dir("job-once") / "runs.txt").read_text()
    assert runs == "ran\n"


def test_failed_job_reports_the_tail_of_stderr(platform: LocalMLPlatform) -> None:
    code = "import sys; print('x' * 5000, file=sys.stderr); sys.exit('boom: bad data')"
    platform.submit_job(request("job-fails", code))
    info = finished(platform, "job-fails")
    assert info.status is JobStatus.FAILED
    assert info.error.startswith("exit code 1:")
    assert info.error.endswith("boom: bad data")
    assert len(info.error) < 2100


def test_timeout_kills_the_job(platform: LocalMLPlatform) -> None:
    platform.submit_job(request("job-slow", "import time; time.sleep(60)", timeout_s=0.5))
    info = finished(platform, "job-slow", timeout=15)
    assert info.status is JobStatus.FAILED
    assert info.error == "timed out after 0.5 s"


def test_cancel_stops_a_running_job(platform: LocalMLPlatform) -> None:
    platform.submit_job(request("job-cancel", "import time; time.sleep(60)"))
    assert wait_until(lambda: platform.get_job("job-cancel").status is JobStatus.RUNNING, 20)
    info = platform.cancel_job("job-cancel")
    assert info.status is JobStatus.CANCELED
    assert platform.get_job("job-cancel").status is JobStatus.CANCELED
    # a finished job stays as it was
    assert platform.cancel_job("job-cancel").status is JobStatus.CANCELED


def test_unknown_job_and_bad_requests(platform: LocalMLPlatform) -> None:
    with pytest.raises(NotFound):
        platform.get_job("no-such-job")
    with pytest.raises(PermanentError):
        platform.submit_job(request("../escape", "pass"))
    with pytest.raises(PermanentError, match=r"inputs\.missing"):
        platform.submit_job(
            JobRequest(
                name="job-bad", model="demo", experiment="e", command=(PY, "{inputs.missing}")
            )
        )
    with pytest.raises(PermanentError, match="command"):
        platform.submit_job(JobRequest(name="job-none", model="demo", experiment="e"))
    with pytest.raises(NotFound):  # refused requests claim no name
        platform.get_job("job-bad")


def test_evaluation_document(platform: LocalMLPlatform) -> None:
    code = (
        "import sys, pathlib; "
        "(pathlib.Path(sys.argv[1]) / 'evaluation.json').write_text(sys.argv[2])"
    )
    platform.submit_job(request("job-eval", code, doc='{"schema": "autopilot.evaluation/v1"}'))
    platform.submit_job(request("job-noeval", "pass"))
    platform.submit_job(request("job-badeval", code, doc="{not json"))
    for name in ("job-eval", "job-noeval", "job-badeval"):
        finished(platform, name)
    assert platform.get_evaluation("job-eval") == {"schema": "autopilot.evaluation/v1"}
    with pytest.raises(NotFound):
        platform.get_evaluation("job-noeval")
    with pytest.raises(PermanentError):
        platform.get_evaluation("job-badeval")


def test_status_events_in_event_grid_schema(platform: LocalMLPlatform, sink: ListEventSink) -> None:
    platform.submit_job(request("job-events", "pass"))
    finished(platform, "job-events")

    def mine_so_far() -> list[dict[str, Any]]:
        return [e for e in sink.events if e["data"].get("runId") == "job-events"]

    # the job's end is recorded before its events are sent (by the job's watcher thread)
    assert wait_until(lambda: len(mine_so_far()) >= 4, 30)
    mine = mine_so_far()
    kinds = [(e["eventType"].rsplit(".", 1)[1], e["data"]["runStatus"]) for e in mine]
    assert kinds == [
        ("RunStatusChanged", "Queued"),
        ("RunStatusChanged", "Running"),
        ("RunStatusChanged", "Completed"),
        ("RunCompleted", "Completed"),
    ]
    for event in mine:
        data = event["data"]
        assert event["eventType"].startswith("Microsoft.MachineLearningServices.")
        assert event["topic"] == AZUREML_TOPIC
        assert event["subject"] == f"experiments/{data['experimentId']}/runs/job-events"
        assert {
            "experimentId",
            "experimentName",
            "runId",
            "runType",
            "runTags",
            "runProperties",
            "runStatus",
        } <= set(data)
        assert all(key[0].islower() for key in data)  # camelCase, as real deliveries
        assert data["experimentName"] == "jobs-test"
        assert data["runTags"] == {"autopilot_cycle": "cycle-job-events", "team": "ml"}
        assert event["eventTime"].endswith("Z")
        assert (event["dataVersion"], event["metadataVersion"]) == ("2", "1")
    assert len({e["id"] for e in mine}) == len(mine)
    failed = [e for e in sink.events if e["data"].get("runId") == "job-fails"]
    assert failed and failed[-1]["data"]["runStatus"] == "Failed"
    assert not [e for e in failed if e["eventType"].endswith("RunCompleted")]


def test_orphaned_job_is_reported_failed(tmp_path: Path, platform: LocalMLPlatform) -> None:
    """A job whose watching process died is not left Running forever."""
    import os

    from embedded.files import read_json, write_json_atomic

    platform.submit_job(request("job-orphan", "pass"))
    finished(platform, "job-orphan")
    path = platform.job_dir("job-orphan") / "job.json"
    record = read_json(path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record.update(status="Running", runner_pid=dead.pid, pid=None)
    write_json_atomic(path, record)
    assert dead.pid != os.getpid()
    info = platform.get_job("job-orphan")
    assert info.status is JobStatus.FAILED
    assert "exited before it ended" in info.error


SERVICE_SECRETS = {
    "AUTOPILOT_FUNCTION_KEYS": "ops=fk-0123456789abcdefghijklmnop",
    "AUTOPILOT_TABLE_CONNECTION_STRING": (
        "DefaultEndpointsProtocol=https;AccountName=acct;"
        "AccountKey=QWNjb3VudEtleVNlY3JldA+/0123456789abcdef==;EndpointSuffix=core.windows.net"
    ),
    "AZURE_CLIENT_SECRET": "client-secret-value-42",
}
DUMP_ENV = (
    "import json, os, sys, pathlib; "
    "(pathlib.Path(sys.argv[1]) / 'env.json').write_text(json.dumps(dict(os.environ)))"
)


def test_a_job_gets_the_allow_listed_environment_and_what_the_policy_declares(
    platform: LocalMLPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SERVICE_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATA_LAKE_TOKEN", "passed-through-token-1")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("UNRELATED_SETTING", "not for jobs")
    job = JobRequest(
        name="job-env-allow",
        model="demo",
        experiment="jobs-test",
        command=(PY, "-c", DUMP_ENV, "{outputs}"),
        environment={"OMP_NUM_THREADS": "2", "DATA_LAKE_TOKEN": None, "NOT_SET_ANYWHERE": None},
    )
    platform.submit_job(job)
    assert finished(platform, "job-env-allow").status is JobStatus.COMPLETED
    env = json.loads((platform.job_dir("job-env-allow") / "outputs" / "env.json").read_text())
    for name in (*SERVICE_SECRETS, "UNRELATED_SETTING", "NOT_SET_ANYWHERE"):
        assert name not in env
    for value in SERVICE_SECRETS.values():
        assert value not in json.dumps(env)
    assert env["PATH"] and env["LC_ALL"] == "C.UTF-8" and env["PYTHONUNBUFFERED"] == "1"
    assert env["OMP_NUM_THREADS"] == "2"  # declared with a value
    assert env["DATA_LAKE_TOKEN"] == "passed-through-token-1"  # declared: passed through
    assert env["MLFLOW_TRACKING_URI"] == platform.tracking_uri
    assert env["AUTOPILOT_JOB_NAME"] == "job-env-allow"
    # the record keeps the names passed through, never their values
    record = (platform.job_dir("job-env-allow") / "job.json").read_text()
    assert "passed-through-token-1" not in record and "DATA_LAKE_TOKEN" in record


def test_a_failing_jobs_error_text_is_scrubbed_of_every_configured_secret(tmp_path: Path) -> None:
    from embedded.jobs import JobRunner
    from shared.redact import Redactor

    env = {**SERVICE_SECRETS, "DATA_LAKE_TOKEN": "passed-through-token-1"}
    runner = JobRunner(
        tmp_path / "jobs",
        python=sys.executable,
        code_dir=ROOT,
        env={},
        redactor=Redactor.from_env(env),
    )
    account_key = "QWNjb3VudEtleVNlY3JldA+/0123456789abcdef=="
    echoed = [
        "fk-0123456789abcdefghijklmnop",
        SERVICE_SECRETS["AUTOPILOT_TABLE_CONNECTION_STRING"],
        account_key,
        "client-secret-value-42",
        "passed-through-token-1",
        "QWNjb3VudEtleVNlY3JldA%2B%2F0123456789abcdef%3D%3D",  # percent-encoded
        "https://acct.blob.core.windows.net/c?sv=2024&sig=unconfigured-sas-signature",
    ]
    code = f"import sys; sys.stderr.write('\\n'.join({echoed!r})); sys.exit(3)"
    runner.submit(JobRequest(name="job-leaky", model="m", experiment="e", command=(PY, "-c", code)))
    assert wait_until(lambda: runner.get("job-leaky").job_status.is_terminal)
    error = runner.get("job-leaky").error
    assert error.startswith("exit code 3:") and "***" in error
    for secret in [*echoed[:5], "0123456789abcdef%3D", "unconfigured-sas-signature"]:
        assert secret not in error
    assert "acct.blob.core.windows.net" in error  # what is not secret stays readable
    runner.close()
