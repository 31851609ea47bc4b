"""Local training jobs: real subprocesses, one folder and one JSON status file per job.

``data_dir/jobs/<name>/`` holds ``job.json`` (the record, rewritten atomically on each status
change so any process can read it), ``stdout.log``, ``stderr.log`` and ``outputs/``. Creating
the folder with ``os.mkdir`` is the atomic claim of the name: a second submit of the same name,
from any process, gets ``AlreadyExists`` and nothing runs twice.

The process that submitted a job watches it (a thread): it applies the timeout, records the
outcome and reports each status change. The job runs in its own session under a small
launcher (:mod:`embedded.job_launcher`) that writes its exit code to ``exit_code``, so it
outlives a crash or restart of that process. The next reader of a job whose watcher's process
has died adopts it (``take_over``): it watches a job still running (found by pid and process
start time), records the outcome of one that ended meanwhile, runs one that was never started,
and reports Failed only a job whose process is gone without an exit code.

A job does not inherit the service's environment (function keys, connection strings): it gets
the allow-listed basics a Python program needs (:data:`BASE_ENV`), what the policy declares
(``training.environment``) and the job's own variables. Its error text (the stderr tail) is
scrubbed of every configured secret before it is recorded.
"""

from embedded.jobs.environment import BASE_ENV, env_name, job_environment
from embedded.jobs.process import process_start
from embedded.jobs.record import JOB_NAME, JobRecord
from embedded.jobs.runner import JobRunner, OnChange, Prepare

__all__ = [
    "BASE_ENV",
    "JOB_NAME",
    "JobRecord",
    "JobRunner",
    "OnChange",
    "Prepare",
    "env_name",
    "job_environment",
    "process_start",
]
