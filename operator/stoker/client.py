"""The SDK application code uses to enqueue work: Hangfire's ``BackgroundJob`` client, for Stoker.

    client = Client.from_kubeconfig(namespace="shop", image="ghcr.io/acme/tasks:1.4")
    job = client.enqueue("send_welcome_email", {"user_id": 9})
    client.schedule("send_reminder", {"user_id": 9}, delay=timedelta(days=1))
    client.continue_with(job, "log_email_sent", {"user_id": 9})

Every call builds its BackgroundJob through the models in stoker.api.models, so bad input raises
ValueError (pydantic's ValidationError is one) before any request, and it sends only what the
caller set, as minimal as a hand-written manifest. Job names are made here, not by the server: a
create retried after a lost answer then finds its own job instead of making a second one, and a
batch continuation can name its parents before they exist.

Manifests and requests are built by pure code that stoker.client_async.AsyncClient shares; the
two clients differ only in how a request is sent.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, Self, TypedDict, Unpack

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kubernetes_config
from pydantic import Field, TypeAdapter

from stoker.api.durations import format_duration, parse_duration
from stoker.api.models import (
    ANNOTATION_REQUEUE,
    ANNOTATION_RETRY_NOW,
    ANNOTATION_TRIGGER,
    API_VERSION,
    GROUP,
    JOB_NAME_MAX,
    TASK_ARGS_MAX_BYTES,
    VERSION,
    BackgroundJobSpec,
    ObjectMeta,
    ObjectName,
    PodTemplate,
    RetryPolicy,
)

BACKGROUND_JOBS = "backgroundjobs"
RECURRING_JOBS = "recurringjobs"
MAIN_CONTAINER = "main"
# Explicit, because kubernetes_asyncio picks JSON Patch for a dict body when left to choose.
MERGE_PATCH = "application/merge-patch+json"
# Kubernetes' generateName alphabet (no vowels, no look-alikes). Twelve characters are about 57
# bits, so two live jobs of one task never draw the same name in practice.
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 12
# Seconds to wait before each retry of a request that met a transient failure.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)
# Throttling and an overloaded or restarting API server: the same request may succeed later.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
SERVICE_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

AfterCondition = Literal["Succeeded", "Finished"]

# The kubeconfig loaders are untyped.
k8s_config: Any = kubernetes_config

_JOB_NAME: TypeAdapter[str] = TypeAdapter(Annotated[ObjectName, Field(max_length=JOB_NAME_MAX)])


class JobOptions(TypedDict, total=False):
    """Keyword options every call takes; leaving one out or passing None means "not set"."""

    name: str | None  # the job's name; a create that finds it already there returns it
    queue: str | None
    priority: int | None
    # An int is the number of retries after the first failed attempt (spec.retry.attempts):
    # retry=3 runs a failing job at most 4 times.
    retry: RetryPolicy | Mapping[str, Any] | int | None
    timeout: timedelta | str | None
    concurrency_key: str | None
    suspend: bool | None
    ttl_after_finished: timedelta | str | None
    labels: Mapping[str, str] | None  # on the BackgroundJob
    annotations: Mapping[str, str] | None
    pod_labels: Mapping[str, str] | None  # on every pod (template.metadata)
    pod_annotations: Mapping[str, str] | None
    image: str | None  # this call's image instead of the client's image or template
    template: Mapping[str, Any] | None  # this call's pod template instead of the client's


@dataclass(frozen=True)
class JobHandle:
    namespace: str
    name: str


@dataclass(frozen=True)
class Call:
    """One job of a batch: what ``enqueue(task, args, **opts)`` would create."""

    task: str
    args: Mapping[str, Any] | None = None
    opts: JobOptions = field(default_factory=lambda: JobOptions())


@dataclass(frozen=True)
class Batch:
    jobs: tuple[JobHandle, ...]
    continuation: JobHandle | None = None


# ---------------------------------------------------------------- names, durations, arguments


def random_suffix() -> str:
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def job_name(task: str, suffix: str) -> str:
    """``<task as a DNS label>-<suffix>``, at most JOB_NAME_MAX characters."""
    stem = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")
    stem = stem[: JOB_NAME_MAX - len(suffix) - 1].rstrip("-") or "job"
    return f"{stem}-{suffix}"


def new_token() -> str:
    return uuid.uuid4().hex


def go_duration(option: str, value: timedelta | str) -> str:
    """A Go duration string: a timedelta formatted exactly, a string checked and kept as written."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"{option} must not be negative, got {value}")
        return exact_duration(value)
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from exc
    return value


def exact_duration(value: timedelta) -> str:
    """Go's form of a non-negative timedelta to the microsecond: 1h30m, 1.5s, 250ms, 20us.

    Whole seconds are format_duration's; a fraction is kept, since "0s" for a 500 ms delay
    would start the job at once."""
    micros = value // timedelta(microseconds=1)
    whole, fraction = divmod(micros, 1_000_000)
    if fraction == 0:
        return format_duration(value)
    if whole == 0:
        # As Go prints it: below a second in ms, below a millisecond in us.
        if fraction >= 1000:
            return f"{_decimal(fraction, 1000)}ms"
        return f"{fraction}us"
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    prefix = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return f"{prefix}{_decimal(seconds * 1_000_000 + fraction, 1_000_000)}s"


def _decimal(numerator: int, denominator: int) -> str:
    """numerator / denominator in decimal, without trailing zeros (both are integers)."""
    whole, rest = divmod(numerator, denominator)
    if rest == 0:
        return str(whole)
    digits = len(str(denominator)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def task_call(task: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": task}
    if args is None:
        return call
    call["args"] = dict(args)
    # Measured exactly as the operator measures it (stoker.core.lifecycle), so that the client
    # never accepts arguments that the operator would fail the job for.
    try:
        size = len(json.dumps(call["args"], separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"task args must be a JSON object: {exc}") from exc
    if size > TASK_ARGS_MAX_BYTES:
        raise ValueError(
            f"task args are {size} bytes serialized; at most {TASK_ARGS_MAX_BYTES} are allowed"
        )
    return call


def retry_policy(value: RetryPolicy | Mapping[str, Any] | int) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int):
        return RetryPolicy(attempts=value)
    return RetryPolicy.model_validate(dict(value))


def pod_template(image: str | None, template: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A private copy of the pod template that image or template describes; None for neither."""
    if image is not None and template is not None:
        raise ValueError("pass image or template, not both")
    if template is not None:
        return copy.deepcopy(dict(template))
    if image is not None:
        return {"spec": {"containers": [{"name": MAIN_CONTAINER, "image": image}]}}
    return None


def start_fields(
    delay: timedelta | str | None, at: datetime | None
) -> tuple[datetime | None, str | None]:
    """(startAt, startAfter) of a scheduled job."""
    if at is not None and delay is None:
        if at.utcoffset() is None:
            raise ValueError(
                "at must be timezone-aware, e.g. datetime.now(UTC) + timedelta(hours=1)"
            )
        return at, None
    if delay is not None and at is None:
        return None, go_duration("delay", delay)
    raise ValueError("pass exactly one of delay and at")


def ref_name(ref: str | JobHandle, namespace: str) -> str:
    if isinstance(ref, str):
        return ref
    if ref.namespace != namespace:
        raise ValueError(
            f"job {ref.namespace}/{ref.name} is not in this client's namespace {namespace}"
        )
    return ref.name


def context_namespace(
    contexts: Sequence[Mapping[str, Any]], current: Mapping[str, Any] | None, name: str | None
) -> str | None:
    """The namespace a kubeconfig context (the named one, else the current one) sets."""
    chosen = current if name is None else next((c for c in contexts if c.get("name") == name), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def service_account_namespace() -> str | None:
    path = Path(SERVICE_NAMESPACE_FILE)
    if not path.exists():
        return None
    return path.read_text().strip() or None


def load_in_cluster(
    load: Callable[..., None], configuration: Any, no_kubeconfig: Exception
) -> str | None:
    """Configure from the pod's service account; returns the pod's namespace.

    `load` is the client package's load_incluster_config; it raises the same ConfigException
    type as its kubeconfig loader did (`no_kubeconfig`), and the error then names both causes.
    """
    error_type = type(no_kubeconfig)
    try:
        load(client_configuration=configuration)
    except error_type as not_in_cluster:
        raise error_type(
            f"no usable kubeconfig ({no_kubeconfig}) and not inside a cluster ({not_in_cluster})"
        ) from not_in_cluster
    return service_account_namespace()


def kube_configuration(
    context: str | None = None, config_file: str | None = None
) -> tuple[Any, str | None]:
    """The `kubernetes` package's Configuration as kubectl would connect, and the namespace
    the context (or the pod's service account) names; see Client.from_kubeconfig."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(
            config_file=config_file,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, current = k8s_config.list_kube_config_contexts(config_file)
        found = context_namespace(contexts, current, context)
    except k8s_config.ConfigException as no_kubeconfig:
        if context is not None:
            raise
        found = load_in_cluster(k8s_config.load_incluster_config, configuration, no_kubeconfig)
    return configuration, found


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """One API call as data: the sync and async clients share everything but the sending."""

    verb: Literal["create", "get", "patch", "delete"]
    namespace: str
    plural: str
    name: str
    body: dict[str, Any] | None = None
    # create: an object of this name that already exists is the one asked for (a chosen name).
    adopt_existing: bool = False

    def call(self, api: Any) -> Any:
        """Invoke the CustomObjectsApi method: a coroutine when `api` is kubernetes_asyncio's."""
        where = {
            "group": GROUP,
            "version": VERSION,
            "namespace": self.namespace,
            "plural": self.plural,
        }
        if self.verb == "create":
            return api.create_namespaced_custom_object(**where, body=self.body)
        if self.verb == "get":
            return api.get_namespaced_custom_object(**where, name=self.name)
        if self.verb == "patch":
            return api.patch_namespaced_custom_object(
                **where, name=self.name, body=self.body, _content_type=MERGE_PATCH
            )
        # Background propagation: the pods are owned by the job; the garbage collector removes them.
        return api.delete_namespaced_custom_object(
            **where, name=self.name, propagation_policy="Background"
        )

    @property
    def handle(self) -> JobHandle:
        return JobHandle(self.namespace, self.name)


@dataclass(frozen=True)
class Reply:
    body: Any = None  # the server's answer; None when the effect was found already in place
    existed: bool = True  # delete: False when there was nothing to delete


def after_error(
    request: Request, status: int | None, attempt: int, delays: Sequence[float]
) -> Reply | float | None:
    """What a failed attempt (numbered from 0) means: its effect holds already (a Reply), send
    again after this many seconds (a float), or give up (None: the caller re-raises).

    `status` is the HTTP status, or None when no answer arrived, in which case the server may or
    may not have applied the request: that is why a later "already exists" (create) or "not
    found" (delete) counts as this call's own success.
    """
    resent = attempt > 0
    if status == 409 and request.verb == "create" and (request.adopt_existing or resent):
        return Reply()
    if status == 404 and request.verb == "delete":
        return Reply(existed=resent)
    if (status is None or status in TRANSIENT_STATUSES) and attempt < len(delays):
        return delays[attempt]
    return None


class RequestBuilder:
    """Turns calls into BackgroundJob manifests and API requests, with no I/O."""

    def __init__(
        self, namespace: str, image: str | None = None, template: Mapping[str, Any] | None = None
    ) -> None:
        self.namespace = namespace
        self._template = pod_template(image, template)
        if self._template is not None:
            PodTemplate.model_validate(self._template)

    def job(
        self,
        task: str,
        args: Mapping[str, Any] | None,
        opts: JobOptions,
        *,
        start_at: datetime | None = None,
        start_after: str | None = None,
        after: Sequence[str] = (),
        condition: AfterCondition | None = None,
    ) -> Request:
        unknown = opts.keys() - JobOptions.__annotations__.keys()
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        fields: dict[str, Any] = {
            "template": self._template_for(opts),
            "task": task_call(task, args),
            "queue": opts.get("queue"),
            "priority": opts.get("priority"),
            "concurrency_key": opts.get("concurrency_key"),
            "suspend": opts.get("suspend"),
            "start_at": start_at,
            "start_after": start_after,
            "after": [{"name": parent} for parent in after] or None,
            "after_condition": condition,
        }
        if (timeout := opts.get("timeout")) is not None:
            fields["timeout"] = go_duration("timeout", timeout)
        if (ttl := opts.get("ttl_after_finished")) is not None:
            fields["ttl_after_finished"] = go_duration("ttl_after_finished", ttl)
        if (retry := opts.get("retry")) is not None:
            fields["retry"] = retry_policy(retry)
        spec = BackgroundJobSpec.model_validate(
            {key: value for key, value in fields.items() if value is not None}
        )
        meta = ObjectMeta.model_validate(
            {
                key: dict(value)
                for key, value in (
                    ("labels", opts.get("labels")),
                    ("annotations", opts.get("annotations")),
                )
                if value is not None
            }
        )
        chosen = opts.get("name")
        name = (
            job_name(task, random_suffix()) if chosen is None else _JOB_NAME.validate_python(chosen)
        )
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "BackgroundJob",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                **meta.model_dump(exclude_unset=True),
            },
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
        }
        return Request(
            "create", self.namespace, BACKGROUND_JOBS, name, manifest, chosen is not None
        )

    def continuation(
        self,
        parent: str | JobHandle | Sequence[str | JobHandle],
        task: str,
        args: Mapping[str, Any] | None,
        opts: JobOptions,
        condition: AfterCondition | None,
    ) -> Request:
        parents = [parent] if isinstance(parent, str | JobHandle) else list(parent)
        if not parents:
            raise ValueError("a continuation needs at least one parent job")
        names = [ref_name(p, self.namespace) for p in parents]
        return self.job(task, args, opts, after=names, condition=condition)

    def batch(
        self, calls: Sequence[Call], then: Call | None, condition: AfterCondition | None
    ) -> tuple[list[Request], Request | None]:
        """All requests of a batch, every one built (and so validated) before any is sent."""
        if not calls:
            raise ValueError("a batch needs at least one call")
        if then is None and condition is not None:
            raise ValueError("condition applies to the continuation: pass then= as well")
        jobs = [self.job(c.task, c.args, c.opts) for c in calls]
        if then is None:
            return jobs, None
        after = [job.name for job in jobs]
        return jobs, self.job(then.task, then.args, then.opts, after=after, condition=condition)

    def annotate(
        self, plural: str, ref: str | JobHandle, key: str, token: str | None
    ) -> tuple[Request, str]:
        """A merge patch setting one operation annotation, and the token it sets."""
        token = new_token() if token is None else token
        body = {"metadata": {"annotations": {key: token}}}
        return Request("patch", self.namespace, plural, ref_name(ref, self.namespace), body), token

    def delete(self, ref: str | JobHandle) -> Request:
        return Request("delete", self.namespace, BACKGROUND_JOBS, ref_name(ref, self.namespace))

    def get(self, ref: str | JobHandle) -> Request:
        return Request("get", self.namespace, BACKGROUND_JOBS, ref_name(ref, self.namespace))

    def _template_for(self, opts: JobOptions) -> dict[str, Any] | None:
        """The call's pod template, else the client's; None leaves it to the job's JobQueue."""
        template = pod_template(opts.get("image"), opts.get("template"))
        if template is None:
            if self._template is None:
                if opts.get("pod_labels") is not None or opts.get("pod_annotations") is not None:
                    raise ValueError(
                        "pod_labels and pod_annotations need a pod template: pass image= or "
                        "template= too (a queue's template is used as the queue has it)"
                    )
                return None
            template = copy.deepcopy(self._template)
        for key, extra in (
            ("labels", opts.get("pod_labels")),
            ("annotations", opts.get("pod_annotations")),
        ):
            if extra is not None:
                metadata = template.setdefault("metadata", {})
                metadata[key] = {**(metadata.get(key) or {}), **extra}
        return template


# ---------------------------------------------------------------- the blocking client


class Client:
    """Hangfire's BackgroundJob client for Stoker, over the blocking `kubernetes` package.

    `image` (or a whole pod `template`) is the task-runner default, so that calls only name the
    task; with neither, jobs carry no template and their JobQueue's `spec.template` runs them.
    Without `api`, the `kubernetes` package's default configuration is used (set it with
    kubernetes.config.load_kube_config(), or use from_kubeconfig()). A request that meets a
    transient failure is sent again after each of `retry_delays` seconds in turn.
    """

    def __init__(
        self,
        namespace: str = "default",
        image: str | None = None,
        api: Any = None,
        template: Mapping[str, Any] | None = None,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        self._requests = RequestBuilder(namespace, image, template)
        self._owns_api = api is None
        self._api: Any = k8s.CustomObjectsApi() if api is None else api
        self._retry_delays = tuple(retry_delays)

    @classmethod
    def from_kubeconfig(
        cls,
        context: str | None = None,
        namespace: str | None = None,
        *,
        config_file: str | None = None,
        image: str | None = None,
        template: Mapping[str, Any] | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> Self:
        """Connect as kubectl does: the kubeconfig's context (the named one, else the current
        one); without a kubeconfig and a context name, the service account of the pod we run in.
        The namespace defaults to the context's, else the pod's, else "default"."""
        configuration, found = kube_configuration(context, config_file)
        api = k8s.CustomObjectsApi(k8s.ApiClient(configuration))
        client = cls(
            namespace or found or "default", image, api, template, retry_delays=retry_delays
        )
        client._owns_api = True
        return client

    @property
    def namespace(self) -> str:
        return self._requests.namespace

    def enqueue(
        self, task: str, args: Mapping[str, Any] | None = None, **opts: Unpack[JobOptions]
    ) -> JobHandle:
        """Create a job that runs as soon as its queue has room (Hangfire's Enqueue)."""
        return self._create(self._requests.job(task, args, opts))

    def schedule(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        delay: timedelta | str | None = None,
        at: datetime | None = None,
        **opts: Unpack[JobOptions],
    ) -> JobHandle:
        """Create a job that starts `delay` after its creation, or at the aware datetime `at`
        (Hangfire's Schedule). A delay is a timedelta (kept to the microsecond) or a Go
        duration string."""
        start_at, start_after = start_fields(delay, at)
        request = self._requests.job(task, args, opts, start_at=start_at, start_after=start_after)
        return self._create(request)

    def continue_with(
        self,
        parent: str | JobHandle | Sequence[str | JobHandle],
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        condition: AfterCondition | None = None,
        **opts: Unpack[JobOptions],
    ) -> JobHandle:
        """Create a job that waits for all `parent` jobs (Hangfire's ContinueJobWith): until they
        succeeded, or with condition="Finished" until they finished either way. Without a
        condition the server's default (Succeeded) applies."""
        return self._create(self._requests.continuation(parent, task, args, opts, condition))

    def batch(
        self,
        calls: Sequence[Call],
        *,
        then: Call | None = None,
        condition: AfterCondition | None = None,
    ) -> Batch:
        """Create one job per call, then (optionally) one continuation after all of them.

        Every job is validated before the first is created. Not atomic: when a create fails,
        the jobs created before it stay."""
        jobs, continuation = self._requests.batch(calls, then, condition)
        handles = tuple(self._create(job) for job in jobs)
        return Batch(handles, None if continuation is None else self._create(continuation))

    def requeue(self, job: str | JobHandle, *, token: str | None = None) -> str:
        """Run a Succeeded or Failed job again with a fresh retry budget (Hangfire's Requeue).

        Returns the token; each token runs the job once, so sending the same one again is
        safe, and status.requeueToken shows it once handled."""
        return self._annotate(BACKGROUND_JOBS, job, ANNOTATION_REQUEUE, token)

    def retry_now(self, job: str | JobHandle, *, token: str | None = None) -> str:
        """Skip the remaining delay of a Scheduled job; returns the token, as requeue()."""
        return self._annotate(BACKGROUND_JOBS, job, ANNOTATION_RETRY_NOW, token)

    def trigger(self, recurring_job: str, *, token: str | None = None) -> str:
        """Run a RecurringJob now, leaving its schedule alone (Hangfire's Trigger)."""
        return self._annotate(RECURRING_JOBS, recurring_job, ANNOTATION_TRIGGER, token)

    def delete(self, job: str | JobHandle) -> bool:
        """Delete (cancel) a job; its pod goes with it. False when there was no such job."""
        return self._send(self._requests.delete(job)).existed

    def get(self, job: str | JobHandle) -> dict[str, Any]:
        """The BackgroundJob as stored, to read its status."""
        body: dict[str, Any] = self._send(self._requests.get(job)).body
        return body

    def close(self) -> None:
        """Release the connection pool, when this client made it."""
        if self._owns_api:
            self._api.api_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _create(self, request: Request) -> JobHandle:
        self._send(request)
        return request.handle

    def _annotate(self, plural: str, ref: str | JobHandle, key: str, token: str | None) -> str:
        request, token = self._requests.annotate(plural, ref, key, token)
        self._send(request)
        return token

    def _send(self, request: Request) -> Reply:
        attempt = 0
        while True:
            try:
                return Reply(request.call(self._api))
            except (k8s.ApiException, urllib3.exceptions.HTTPError) as exc:
                status = exc.status if isinstance(exc, k8s.ApiException) else None
                step = after_error(request, status, attempt, self._retry_delays)
                if step is None:
                    raise
                if isinstance(step, Reply):
                    return step
                time.sleep(step)
            attempt += 1
