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
    """camelCase on the wire; unknown fields ignored, so an older operator reads newer objects."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready form sent to the API server: camelCase, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- BackgroundJob


class ObjectMeta(Model):
    """The part of a template's metadata that a user may set."""

    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)


class PodSpec(BaseModel):
    """A core/v1 PodSpec, kept as the user wrote it; the API server validates it on pod create."""

    model_config = ConfigDict(extra="allow")

    containers: list[FreeObject] = Field(
        min_length=1,
        json_schema_extra={
            "description": "At least one container, as in a core/v1 PodSpec.",
            "items": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}},
            },
        },
    )


class PodTemplate(Model):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec


class TaskCall(Model):
    """A named call for the task-runner image: STOKER_TASK and STOKER_ARGS in every container."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    args: FreeObject = Field(
        default_factory=dict,
        description=f"Any JSON object, at most {TASK_ARGS_MAX_BYTES} bytes serialized "
        "(a larger one fails the job at once with reason InvalidSpec).",
    )


class JobRef(Model):
    name: ObjectName


class Backoff(Model):
    """Exponential backoff: initial * factor^(n-1), capped at max, then +/- jitter."""

    initial: Duration = "15s"
    factor: float = Field(default=2.0, ge=1.0, le=100.0)
    max: Duration = "1h"
    jitter: float = Field(default=0.25, ge=0.0, le=1.0)


DEFAULT_RETRY_ATTEMPTS = 3


class RetryPolicy(Model):
    attempts: int = Field(
        default=DEFAULT_RETRY_ATTEMPTS,
        ge=0,
        le=1000,
        description="Retries after the first failed attempt; 0 = never retry.",
    )
    delays: list[Duration] = Field(
        default_factory=list, max_length=100, description="Explicit delays; the last one repeats."
    )
    backoff: Backoff = Field(default_factory=Backoff)
    on_exit_codes: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        default_factory=list,
        max_length=256,
        description="Retry only these exit codes; others fail at once. Empty = retry any failure.",
    )
    on_exhausted: Literal["Fail", "Delete"] = "Fail"


class BackgroundJobSpec(Model):
    queue: DnsLabel = Field(default="default", json_schema_extra={ADMISSION_DEFAULT: True})
    priority: Int32 = 0
    template: PodTemplate | None = Field(
        default=None,
        description="The pod of every attempt. Optional when the job's JobQueue has a template: "
        "then the queue's is used (read at each attempt, never copied into this spec).",
    )
    task: TaskCall | None = None
    start_at: Timestamp | None = None
    start_after: Duration | None = None
    after: list[JobRef] = Field(default_factory=list, max_length=1000)
    after_condition: Literal["Succeeded", "Finished"] = "Succeeded"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: Duration | None = None
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=253)
    suspend: bool = False
    ttl_after_finished: Duration | None = None


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
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: Timestamp
    observed_generation: int | None = None


class AttemptRecord(Model):
    attempt: int
    pod: str
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    result: Literal["Succeeded", "Failed"]
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


class BackgroundJobStatus(Model):
    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    attempt: int = 0
    next_attempt_at: Timestamp | None = None
    enqueued_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    attempts: list[AttemptRecord] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    # Beyond API.md: what the operator needs to resume exactly where it was after a restart.
    run_start_attempt: int | None = Field(
        default=None,
        description="First attempt of the current run; a requeue starts a new run with a "
        "fresh retry budget while attempt numbers continue.",
    )
    requeue_token: str | None = Field(
        default=None, description="The last stoker.dev/requeue token handled."
    )
    retry_now_token: str | None = Field(
        default=None, description="The last stoker.dev/retry-now token handled."
    )
    parents: StringMap = Field(
        default_factory=dict,
        description="UIDs of the `after` jobs seen so far, by name: a parent seen and then "
        "deleted fails this job with reason JobDeleted.",
    )


# ---------------------------------------------------------------- RecurringJob


class JobTemplate(Model):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackgroundJobSpec


CRON_PATTERN = (
    r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|\S+\s+\S+\s+\S+\s+\S+\s+\S+)\s*$"
)


class RecurringJobSpec(Model):
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
    # Admission defaults: `kubectl get rj` shows them in its TimeZone and Suspend columns.
    time_zone: str = Field(
        default="UTC", min_length=1, max_length=64, json_schema_extra={ADMISSION_DEFAULT: True}
    )
    suspend: bool = Field(default=False, json_schema_extra={ADMISSION_DEFAULT: True})
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    misfire_policy: Literal["RunOnce", "RunAll", "Skip"] = "RunOnce"
    starting_deadline: Duration | None = None
    successful_jobs_history_limit: int = Field(default=3, ge=0, le=1000)
    failed_jobs_history_limit: int = Field(default=1, ge=0, le=1000)
    job_template: JobTemplate


class RecurringJobStatus(Model):
    last_schedule_time: Timestamp | None = None
    next_schedule_time: Timestamp | None = None
    last_successful_time: Timestamp | None = None
    last_job: str | None = None
    active: list[str] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    trigger_token: str | None = Field(
        default=None, description="The last stoker.dev/trigger token handled."
    )
    handled_until: Timestamp | None = Field(
        default=None,
        description="Every slot up to this time has been handled (run, skipped or missed): "
        "the operator resumes from here after a restart.",
    )


# ---------------------------------------------------------------- JobQueue


class JobDefaults(Model):
    """What a queue's jobs use where they set nothing themselves."""

    retry: RetryPolicy | None = None
    timeout: Duration | None = None


class JobQueueSpec(Model):
    concurrency: int | None = Field(
        default=None, ge=0, description="At most this many Running jobs; omitted = unlimited."
    )
    priority: Int32 = 0
    suspend: bool = False
    template: PodTemplate | None = Field(
        default=None,
        description="The pod template of the queue's jobs that have none of their own "
        "(Hangfire: the code its workers run).",
    )
    defaults: JobDefaults = Field(default_factory=JobDefaults)


class JobQueueStatus(Model):
    enqueued: int = 0
    running: int = 0
    oldest_enqueued_at: Timestamp | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


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
