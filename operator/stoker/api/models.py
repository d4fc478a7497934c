"""Pydantic models of every Stoker resource: the one source of truth.

The CRDs in crds/ are generated from these models (stoker.api.crds); the operator parses the
objects it watches with them; the client builds objects with them. Field names follow
../shared/API.md exactly (camelCase on the wire, snake_case in Python).

Validation that the API server can do (types, ranges, enums, patterns, CEL rules in
``x-kubernetes-validations``) is declared here so that it is enforced at admission. Defaults
live here too, not in the CRD schema, so that objects are stored exactly as the user applied
them and GitOps tools see no server-side drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from stoker.api.durations import parse_duration

GROUP = "stoker.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Go duration form: "90s", "15m", "1h30m", "1.5h", "0". Negative durations make no sense here.
GO_DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
DURATION_MESSAGE = "must be a duration such as 90s, 15m, 24h or 1h30m"
# No delay, deadline or TTL is longer than ten years: beyond that a value is a mistake, and one
# that overflows a Go duration (about 292 years) cannot even be computed.
MAX_DURATION = timedelta(days=3652)
MAX_DURATION_TEXT = "87648h"
MAX_DURATION_MESSAGE = f"must be at most 10 years ({MAX_DURATION_TEXT})"
# task.args may nest this deep; deeper is refused before anything else reads it.
TASK_ARGS_MAX_DEPTH = 32
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
TASK_ARGS_MAX_BYTES = 32 * 1024
# Marks the few defaults the API server applies at admission, so that `kubectl get` columns and
# label selectors see them; every other default is applied by the operator when it reads.
ADMISSION_DEFAULT = "x-stoker-admission-default"
# Pods carry the job name as a label value, which Kubernetes caps at 63 characters.
JOB_NAME_MAX = 63
# A RecurringJob's jobs are named "<name>-<slot minutes since epoch>" (up to 11 more characters).
RECURRING_NAME_MAX = 52


def rfc3339(value: datetime) -> str:
    """Kubernetes' metav1.Time form: UTC, second precision, trailing Z."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def cel(rule: str, message: str, **extra: str) -> dict[str, Any]:
    return {"rule": rule, "message": message, **extra}


def _at_most_ten_years(text: str) -> str:
    if parse_duration(text) > MAX_DURATION:
        raise ValueError(f"{text} {MAX_DURATION_MESSAGE}")
    return text


Duration = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [
                cel(f"self.matches(r'{GO_DURATION_PATTERN}')", DURATION_MESSAGE),
                # CEL's duration() is Go's ParseDuration; a malformed value has its own message.
                cel(
                    f"!self.matches(r'{GO_DURATION_PATTERN}') || "
                    f"duration(self) <= duration('{MAX_DURATION_TEXT}')",
                    MAX_DURATION_MESSAGE,
                ),
            ],
        }
    ),
    Field(pattern=GO_DURATION_PATTERN),
    AfterValidator(_at_most_ten_years),
]
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
FreeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
StringMap = Annotated[
    dict[str, str],
    WithJsonSchema({"type": "object", "additionalProperties": {"type": "string"}}),
]
DnsLabel = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
ObjectName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class Model(BaseModel):
    """camelCase on the wire; unknown fields ignored, so an older operator reads newer objects.
    A field's docstring is its description in the CRD (`kubectl explain`) and the API reference."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=False,
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready form sent to the API server: camelCase, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- BackgroundJob


class ObjectMeta(Model):
    """The part of a template's metadata that a user may set."""

    labels: StringMap = Field(default_factory=dict)
    """Labels, added to the operator's own."""
    annotations: StringMap = Field(default_factory=dict)
    """Annotations, as written."""


class PodSpec(BaseModel):
    """A core/v1 PodSpec, kept as the user wrote it; the API server validates it on pod create."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    containers: list[FreeObject] = Field(
        min_length=1,
        json_schema_extra={
            "items": {
                "type": "object",
                "description": "A core/v1 Container.",
                "x-kubernetes-preserve-unknown-fields": True,
                "required": ["name"],
                "properties": {
                    "name": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The container's name, unique in the pod.",
                    }
                },
            },
        },
    )
    """At least one container, as in a core/v1 PodSpec. With `task`, each gets STOKER_TASK
    and STOKER_ARGS; every container gets STOKER_JOB_NAME and STOKER_ATTEMPT."""


class PodTemplate(Model):
    """A pod template, as in batch/v1 Job; restartPolicy is always Never."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Labels and annotations of every pod."""
    spec: PodSpec
    """The pod's spec."""


class TaskCall(Model):
    """A named call for the task-runner image: STOKER_TASK and STOKER_ARGS in every container."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    """The task's registered name (the runner's `@task`), as STOKER_TASK."""
    args: FreeObject = Field(default_factory=dict)
    """Keyword arguments as a JSON object, as STOKER_ARGS: at most 32 KiB serialized and 32
    levels deep (more fails the job at once with reason InvalidSpec)."""


class JobRef(Model):
    """A BackgroundJob in the same namespace."""

    name: ObjectName
    """The job's name; it may not exist yet."""


class Backoff(Model):
    """Exponential backoff: initial * factor^(n-1), capped at max, then +/- jitter."""

    initial: Duration = "15s"
    """The delay after the first failed attempt."""
    factor: float = Field(default=2.0, ge=1.0, le=100.0)
    """Each next delay is this many times the previous one."""
    max: Duration = "1h"
    """No delay is longer than this (before jitter)."""
    jitter: float = Field(default=0.25, ge=0.0, le=1.0)
    """Each delay varies by up to this fraction either way (0.25: +/-25 %), fixed per job."""


DEFAULT_RETRY_ATTEMPTS = 3


class RetryPolicy(Model):
    """When a failed attempt is retried, and after how long (Hangfire: AutomaticRetry)."""

    attempts: int = Field(default=DEFAULT_RETRY_ATTEMPTS, ge=0, le=1000)
    """Retries after the first failed attempt; 0 = never retry."""
    delays: list[Duration] = Field(default_factory=list, max_length=100)
    """Explicit delays before each retry, without jitter; the last one repeats."""
    backoff: Backoff = Field(default_factory=Backoff)
    """Exponential backoff, used when `delays` is empty."""
    on_exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=list, max_length=256
    )
    """Retry only these exit codes; others fail at once. Empty = retry any failure. A timeout
    and a pod lost without an exit code are always retried."""
    on_exhausted: Literal["Fail", "Delete"] = "Fail"
    """After the last failed attempt: Fail (keep the job, Failed) or Delete (delete it)."""


class BackgroundJobSpec(Model):
    """One unit of background work."""

    queue: DnsLabel = Field(default="default", json_schema_extra={ADMISSION_DEFAULT: True})
    """The JobQueue in this namespace; `default` exists without an object."""
    priority: Int32 = 0
    """Higher is dispatched first within the queue."""
    template: PodTemplate | None = None
    """The pod of every attempt. Optional when the job's JobQueue has a template: then the
    queue's is used (read at each attempt, never copied into this spec)."""
    task: TaskCall | None = None
    """A named call for the task-runner image."""
    start_at: Timestamp | None = None
    """Do not start before this time (Hangfire: Schedule)."""
    start_after: Duration | None = None
    """Do not start before creationTimestamp plus this."""
    after: list[JobRef] = Field(default_factory=list, max_length=1000)
    """Wait for all of these jobs (Hangfire: ContinueJobWith; several = batch continuation)."""
    after_condition: Literal["Succeeded", "Finished"] = "Succeeded"
    """What the jobs in `after` must reach: Succeeded, or Finished (Succeeded or Failed)."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """The retry policy; default 3 retries with exponential backoff from 15s."""
    timeout: Duration | None = None
    """Deadline of each attempt (the pod's activeDeadlineSeconds); a timeout is a failed
    attempt with reason DeadlineExceeded."""
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=253)
    """A mutex: at most one Running job per key in the namespace (Hangfire:
    DisableConcurrentExecution)."""
    suspend: bool = False
    """True: start no new attempt (a running one finishes)."""
    ttl_after_finished: Duration | None = None
    """Delete the job this long after it Succeeded or Failed."""


BACKGROUND_JOB_RULES = [
    cel(
        "!(has(self.startAt) && has(self.startAfter))",
        "set startAt or startAfter, not both",
    ),
]

Phase = Literal["Awaiting", "Scheduled", "Enqueued", "Running", "Succeeded", "Failed"]
FINISHED_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


class Condition(Model):
    """A metav1.Condition."""

    type: str
    """The condition's type, CamelCase."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str
    """Why, machine-readable CamelCase."""
    message: str = ""
    """Why, for people."""
    last_transition_time: Timestamp
    """When status last changed."""
    observed_generation: int | None = None
    """The metadata.generation the condition was set for."""


class AttemptRecord(Model):
    """One finished attempt."""

    attempt: int
    """The attempt's number, 1-based."""
    pod: str
    """The attempt's pod."""
    started_at: Timestamp | None = None
    """When the pod started."""
    finished_at: Timestamp | None = None
    """When the pod ended."""
    result: Literal["Succeeded", "Failed"]
    """How the attempt ended."""
    exit_code: int | None = None
    """The main container's exit code, when it has one."""
    reason: str | None = None
    """Why it ended: Completed, Error, DeadlineExceeded, PodLost, or the pod's own reason."""
    message: str | None = None
    """The container's termination message, trimmed."""


class BackgroundJobStatus(Model):
    """Where the job is, written by the operator only."""

    phase: Phase | None = None
    """Awaiting, Scheduled, Enqueued, Running, Succeeded or Failed."""
    reason: str | None = None
    """Why the job is in its phase, machine-readable CamelCase."""
    message: str | None = None
    """Why the job is in its phase, for people."""
    attempt: int = 0
    """The number of the current or last attempt, 1-based; 0 before the first."""
    next_attempt_at: Timestamp | None = None
    """When the next attempt may start (phase Scheduled)."""
    enqueued_at: Timestamp | None = None
    """When the job became ready to run (FIFO order within a priority)."""
    started_at: Timestamp | None = None
    """When the first attempt of the current run started."""
    finished_at: Timestamp | None = None
    """When the job Succeeded or Failed."""
    attempts: list[AttemptRecord] = Field(default_factory=list)
    """Finished attempts, newest last, at most the last 20."""
    conditions: list[Condition] = Field(default_factory=list)
    """Complete and Failed, as batch/v1 Job."""
    observed_generation: int | None = None
    """The metadata.generation this status was written for."""
    # Beyond API.md: what the operator needs to resume exactly where it was after a restart.
    run_start_attempt: int | None = None
    """First attempt of the current run; a requeue starts a new run with a fresh retry budget
    while attempt numbers continue."""
    requeue_token: str | None = None
    """The last stoker.dev/requeue token handled."""
    retry_now_token: str | None = None
    """The last stoker.dev/retry-now token handled."""
    parents: StringMap = Field(default_factory=dict)
    """UIDs of the `after` jobs seen so far, by name: a parent seen and then deleted fails this
    job with reason JobDeleted."""


# ---------------------------------------------------------------- RecurringJob


class JobTemplate(Model):
    """The BackgroundJob each run creates."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Labels and annotations of every created job."""
    spec: BackgroundJobSpec
    """The spec of every created job."""


CRON_PATTERN = (
    r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s*$"
)


class RecurringJobSpec(Model):
    """A cron schedule and the job it runs (Hangfire: RecurringJob.AddOrUpdate)."""

    schedule: str = Field(
        min_length=1,
        max_length=256,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.matches(r'{CRON_PATTERN}')",
                    "schedule must have 5 fields (minute hour day-of-month month day-of-week) "
                    "or be one of " + ", ".join(CRON_MACROS),
                )
            ]
        },
    )
    """5-field cron (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly,
    @monthly, @yearly."""
    # Admission defaults: `kubectl get rj` shows them in its TimeZone and Suspend columns.
    time_zone: str = Field(
        default="UTC", min_length=1, max_length=64, json_schema_extra={ADMISSION_DEFAULT: True}
    )
    """IANA time zone of the schedule; correct across DST changes."""
    suspend: bool = Field(default=False, json_schema_extra={ADMISSION_DEFAULT: True})
    """True: schedule no runs (slots passed while suspended are not run on resume)."""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    """When a run is due while an earlier one is active: Allow, Forbid (skip) or Replace."""
    misfire_policy: Literal["RunOnce", "RunAll", "Skip"] = "RunOnce"
    """Runs missed while the operator was down: RunOnce (the latest), RunAll (at most 100,
    oldest first) or Skip."""
    starting_deadline: Duration | None = None
    """A run missed by more than this is skipped."""
    successful_jobs_history_limit: int = Field(default=3, ge=0, le=1000)
    """Succeeded jobs to keep."""
    failed_jobs_history_limit: int = Field(default=1, ge=0, le=1000)
    """Failed jobs to keep."""
    job_template: JobTemplate
    """The BackgroundJob each run creates."""


class RecurringJobStatus(Model):
    """Where the schedule is, written by the operator only."""

    last_schedule_time: Timestamp | None = None
    """The slot of the latest scheduled run."""
    next_schedule_time: Timestamp | None = None
    """The next slot; unset while suspended or invalid."""
    last_successful_time: Timestamp | None = None
    """When a created job last Succeeded."""
    last_job: str | None = None
    """The name of the latest created job."""
    active: list[str] = Field(default_factory=list)
    """Created jobs that have not finished."""
    conditions: list[Condition] = Field(default_factory=list)
    """Valid: False with a message for a schedule or time zone that cannot be used."""
    observed_generation: int | None = None
    """The metadata.generation this status was written for."""
    trigger_token: str | None = None
    """The last stoker.dev/trigger token handled."""
    handled_until: Timestamp | None = None
    """Every slot up to this time has been handled (run, skipped or missed): the operator
    resumes from here after a restart."""


# ---------------------------------------------------------------- JobQueue


class JobDefaults(Model):
    """What a queue's jobs use where they set nothing themselves."""

    retry: RetryPolicy | None = None
    """The retry policy of jobs without `retry` (a job's own replaces it as a whole)."""
    timeout: Duration | None = None
    """The per-attempt timeout of jobs without `timeout`."""


class JobQueueSpec(Model):
    """A queue's limits and what its jobs run (Hangfire: queues and WorkerCount)."""

    concurrency: int | None = Field(default=None, ge=0)
    """At most this many Running jobs; omitted = unlimited."""
    priority: Int32 = 0
    """Queues with higher priority are served first from the operator-wide limit."""
    suspend: bool = False
    """True: dispatch nothing; jobs stay Enqueued (reason QueueSuspended)."""
    template: PodTemplate | None = None
    """The pod template of the queue's jobs that have none of their own (Hangfire: the code
    its workers run)."""
    defaults: JobDefaults = Field(default_factory=JobDefaults)
    """Retry policy and timeout of the queue's jobs that set none."""


class JobQueueStatus(Model):
    """The queue's figures, written by the operator only."""

    enqueued: int = 0
    """Jobs ready to run and waiting for a slot."""
    running: int = 0
    """Jobs Running."""
    oldest_enqueued_at: Timestamp | None = None
    """When the longest-waiting ready job became ready."""
    conditions: list[Condition] = Field(default_factory=list)
    """Active: False while the queue is suspended."""
    observed_generation: int | None = None
    """The metadata.generation this status was written for."""


# ---------------------------------------------------------------- annotations and labels

ANNOTATION_REQUEUE = f"{GROUP}/requeue"
ANNOTATION_RETRY_NOW = f"{GROUP}/retry-now"
ANNOTATION_TRIGGER = f"{GROUP}/trigger"
LABEL_JOB_NAME = f"{GROUP}/job-name"
LABEL_JOB_UID = f"{GROUP}/job-uid"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_QUEUE = f"{GROUP}/queue"
LABEL_RECURRING_JOB = f"{GROUP}/recurring-job"
ANNOTATION_SCHEDULED_AT = f"{GROUP}/scheduled-at"
ENV_TASK = "STOKER_TASK"
ENV_ARGS = "STOKER_ARGS"
DEFAULT_QUEUE = "default"


def now_utc() -> datetime:
    """The one clock read of the I/O shell; pure code takes `now` as an argument."""
    return datetime.now(UTC)


def status_patch(stored: Mapping[str, Any], new: Model) -> dict[str, Any]:
    """The JSON merge patch that turns the stored .status into `new`: changed fields only, null
    for a field of the model that went away, other writers' fields (kopf's) left alone; empty
    when nothing changed, so no write is spent on it."""
    after = new.wire()
    ours = {field.alias or name for name, field in type(new).model_fields.items()}
    patch = {key: value for key, value in after.items() if stored.get(key) != value}
    patch.update({key: None for key in stored.keys() & ours if key not in after})
    return patch
