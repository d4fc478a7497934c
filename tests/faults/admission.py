"""Write denials on demand: a ValidatingAdmissionPolicy and its Binding that refuse one verb
on one resource in one namespace (admissionregistration.k8s.io/v1, served by default since
Kubernetes 1.30), switched on and off by the test.

The policy answers 403 Forbidden, as a policy engine, a quota or Pod Security admission does:
a refusal from outside the operator that says nothing about the request's own validity.

A policy takes effect when the API server's policy informer has seen it, shortly after it is
created; switching on and off therefore probes with dry-run requests (they pass admission but
store nothing) until the server answers as expected.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from harness import wait_for

MESSAGE = "denied by the fault test"
GROUP = "stoker.dev"
VERSION = "v1alpha1"


@dataclass(frozen=True)
class Rule:
    """What to deny: `operation` (CREATE, UPDATE, DELETE) on `resource` (with
    "/subresource") of API group `group`."""

    group: str
    resource: str
    operation: str

    @property
    def label(self) -> str:
        return f"{self.operation.lower()} {self.resource}"


PODS_CREATE = Rule("", "pods", "CREATE")
EVENTS_CREATE = Rule("", "events", "CREATE")
BGJ_STATUS = Rule(GROUP, "backgroundjobs/status", "UPDATE")  # a PATCH is an UPDATE here
RJ_STATUS = Rule(GROUP, "recurringjobs/status", "UPDATE")
JQ_STATUS = Rule(GROUP, "jobqueues/status", "UPDATE")
BGJ_CREATE = Rule(GROUP, "backgroundjobs", "CREATE")
BGJ_DELETE = Rule(GROUP, "backgroundjobs", "DELETE")


class Denial:
    """One rule in one namespace. `probe` makes a dry-run request the rule matches (it gets
    the name of an existing object for updates and deletes)."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        rule: Rule,
        namespace: str,
        probe_object: str | None = None,
    ) -> None:
        self.api, self.rule, self.namespace = api, rule, namespace
        self.probe_object = probe_object
        self.name = f"stoker-fault-deny-{uuid.uuid4().hex[:8]}"
        self.admission = kubernetes.client.AdmissionregistrationV1Api(api)

    def policy(self) -> dict[str, Any]:
        events_groups = ["", "events.k8s.io"]
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": self.name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": events_groups
                            if self.rule.resource == "events"
                            else [self.rule.group],
                            "apiVersions": ["*"],
                            "operations": [self.rule.operation],
                            "resources": [self.rule.resource],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "false",
                        "message": f"{MESSAGE}: {self.rule.label}",
                        "reason": "Forbidden",
                    }
                ],
            },
        }

    def binding(self) -> dict[str, Any]:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": self.name},
            "spec": {
                "policyName": self.name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": self.namespace}
                    }
                },
            },
        }

    def on(self) -> None:
        """Deny from now on (returns once the API server enforces it)."""
        self.admission.create_validating_admission_policy(self.policy())
        self.admission.create_validating_admission_policy_binding(self.binding())
        wait_for(lambda: self.denied(), 30, 0.1, f"{self.rule.label} denied in {self.namespace}")

    def off(self) -> None:
        """Allow again (returns once the API server no longer denies)."""
        for delete in (
            self.admission.delete_validating_admission_policy_binding,
            self.admission.delete_validating_admission_policy,
        ):
            try:
                delete(self.name)
            except ApiException as e:
                if e.status != 404:
                    raise
        wait_for(
            lambda: self.denied() is False,
            30,
            0.1,
            f"{self.rule.label} allowed again in {self.namespace}",
        )

    def denied(self) -> bool:
        """Whether a dry-run request of the rule's kind is refused by this policy now."""
        try:
            self._probe()()
        except ApiException as e:
            if e.status == 403 and MESSAGE in (e.body or ""):
                return True
            raise
        return False

    def _probe(self) -> Callable[[], object]:
        core = kubernetes.client.CoreV1Api(self.api)
        custom = kubernetes.client.CustomObjectsApi(self.api)
        ns, dry = self.namespace, "All"
        plural = self.rule.resource.split("/")[0]
        if self.rule == PODS_CREATE:
            pod = {
                "metadata": {"name": "probe"},
                "spec": {"containers": [{"name": "main", "image": "probe"}]},
            }
            return lambda: core.create_namespaced_pod(ns, pod, dry_run=dry)
        if self.rule == EVENTS_CREATE:
            event = {
                "metadata": {"name": "probe"},
                "involvedObject": {"kind": "Pod", "name": "probe", "namespace": ns},
                "reason": "Probe",
                "message": "probe",
            }
            return lambda: core.create_namespaced_event(ns, event, dry_run=dry)
        if self.rule == BGJ_CREATE:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BackgroundJob",
                "metadata": {"name": "probe"},
                "spec": {
                    "template": {"spec": {"containers": [{"name": "main", "image": "probe"}]}}
                },
            }
            return lambda: custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, plural, body, dry_run=dry
            )
        assert self.probe_object, f"{self.rule.label} needs an existing object to probe with"
        name = self.probe_object
        if self.rule.operation == "DELETE":
            return lambda: custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, plural, name, dry_run=dry
            )
        # A status merge patch that changes nothing still passes through admission.
        return lambda: custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, plural, name, {"status": {}}, dry_run=dry
        )
