"""The command line's one connection to the API server, and the one-line form of its errors.

Connects as kubectl does (--kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context, else
the current one; else the pod's service account), through stoker.client's loader.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kubernetes_config
from pydantic import ValidationError

from stoker.api.models import GROUP, LABEL_ATTEMPT, LABEL_JOB_NAME, LABEL_JOB_UID, VERSION
from stoker.cli.kinds import Kind
from stoker.client import MERGE_PATCH, Client, kube_configuration

# kubectl's page size: a list of 10,000 jobs arrives in pieces, never as one huge answer.
PAGE = 500
# Seconds to wait for an answer: an unreachable server is an error, not a hang.
REQUEST_TIMEOUT = 30.0

config_module: Any = kubernetes_config


class CommandError(Exception):
    """An error the user can fix: printed as one line, exit status 1."""


def one_line(exc: BaseException) -> str:
    """The error as one line, in kubectl's words where kubectl has them."""
    if isinstance(exc, k8s.ApiException):
        reason, message = exc.reason or "Error", ""
        try:
            body = json.loads(exc.body or "")
            reason, message = body.get("reason") or reason, body.get("message") or ""
        except (TypeError, ValueError, AttributeError):
            message = str(exc.body or "").strip()
        if exc.status == 0 or not exc.status:
            return f"error: {reason}: {message}".strip()
        return " ".join(f"Error from server ({reason}): {message or exc.reason}".split())
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        cause = exc.reason or exc
        return f"error: cannot reach the API server at {exc.url or ''}: {_cause(cause)}".replace(
            " at : ", ": "
        )
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return f"error: cannot reach the API server: {_cause(exc)}"
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return f"error: {problems}"
    if isinstance(exc, config_module.ConfigException):
        return f"error: kubeconfig: {' '.join(str(exc).split())}"
    return "error: " + " ".join(str(exc).split())


def _cause(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 wraps socket errors as "<Connection object>: Failed to establish ...: [Errno 111] …".
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return " ".join(text.split())


def not_found(kind: Kind, name: str) -> str:
    return f'Error from server (NotFound): {kind.resource()} "{name}" not found'


@dataclass
class Target:
    """Where a command acts: the kubectl flags, from the group or the command (the later wins).

    Connects on first use, so that --help, completion scripts and `crds` need no cluster."""

    namespace: str | None = None
    all_namespaces: bool = False
    context: str | None = None
    kubeconfig: str | None = None
    _cluster: Cluster | None = field(default=None, repr=False)

    def cluster(self) -> Cluster:
        if self._cluster is None:
            configuration, found = kube_configuration(self.context, self.kubeconfig)
            api = k8s.ApiClient(configuration)
            self._cluster = Cluster(api, self.namespace or found or "default")
        return self._cluster

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.api_client.close()


class Cluster:
    """The API calls the commands make; every one of them is here."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        # Any: the package's own annotations disagree with how it is called (**kwargs, raw data).
        self.custom: Any = k8s.CustomObjectsApi(api_client)
        self.core: Any = k8s.CoreV1Api(api_client)

    def client(self, namespace: str | None = None) -> Client:
        """stoker.client's Client for one namespace, on this connection."""
        return Client(namespace or self.namespace, api=self.custom)

    def list_objects(
        self, kind: Kind, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of `kind` in `namespace` (None: all namespaces), page by page."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        where = {"group": GROUP, "version": VERSION, "plural": kind.plural}
        while True:
            options: dict[str, Any] = {"limit": PAGE, "_request_timeout": REQUEST_TIMEOUT}
            if selector:
                options["label_selector"] = selector
            if token:
                options["_continue"] = token
            if namespace is None:
                page = self.custom.list_cluster_custom_object(**where, **options)
            else:
                page = self.custom.list_namespaced_custom_object(
                    **where, namespace=namespace, **options
                )
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, kind.plural, name, _request_timeout=REQUEST_TIMEOUT
        )
        return body

    def patch(
        self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            kind.plural,
            name,
            dict(body),
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return result

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, kind.plural, dict(body), _request_timeout=REQUEST_TIMEOUT
        )
        return result

    def events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The Events about one object (by UID: not those of an older object of its name)."""
        answer = self.core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.uid={uid}",
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
        items: list[dict[str, Any]] = json.loads(answer.data).get("items") or []
        return items

    def attempt_pods(self, namespace: str, job: Mapping[str, Any], attempt: int) -> list[Any]:
        """The pod(s) of one attempt of `job`, found by the labels every attempt pod carries."""
        meta = job.get("metadata") or {}
        selector = ",".join(
            [
                f"{LABEL_JOB_NAME}={meta.get('name')}",
                f"{LABEL_JOB_UID}={meta.get('uid')}",
                f"{LABEL_ATTEMPT}={attempt}",
            ]
        )
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
        return list(pods.items)

    def pod_started(self, namespace: str, name: str, timeout: float) -> bool:
        """Wait (watching, up to `timeout` seconds) until the pod has left Pending."""
        from kubernetes import watch

        watcher_type: Any = watch.Watch
        stream = watcher_type().stream(
            self.core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, int(timeout)),
        )
        for event in stream:
            pod = event["object"]
            if event["type"] == "DELETED":
                return False
            if pod.status is not None and pod.status.phase not in (None, "Pending"):
                return True
        return False

    def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        """The container's log as it arrives (pods/log; with follow, until the container ends)."""
        options: dict[str, Any] = {"container": container, "follow": follow}
        if tail is not None:
            options["tail_lines"] = tail
        if timestamps:
            options["timestamps"] = True
        if not follow:
            options["_request_timeout"] = REQUEST_TIMEOUT
        answer = self.core.read_namespaced_pod_log(
            pod, namespace, _preload_content=False, **options
        )
        try:
            # Chunks as the server flushes them: a followed log shows each line when written.
            yield from answer.stream(amt=None, decode_content=True)
        finally:
            answer.release_conn()
