"""The Helm chart, checked with the pinned helm: lint, render with each feature, and the rendered
objects against what the operator needs (env, RBAC, CRDs, metric names from API.md)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Cluster, KubectlError, build_bin_dir, wait_for
from stoker.api.durations import parse_duration
from stoker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "stoker"
RELEASE, RELEASE_NS = "stoker", "stoker-system"
FULLNAME = "stoker"  # the release name already contains the chart name

# API.md, "Prometheus metrics": the only stoker_ names dashboards and alerts may use.
API_METRICS = frozenset(
    {
        "stoker_jobs_created_total",
        "stoker_attempts_started_total",
        "stoker_attempts_finished_total",
        "stoker_jobs_finished_total",
        "stoker_retries_total",
        "stoker_attempt_duration_seconds",
        "stoker_queue_wait_seconds",
        "stoker_jobs",
        "stoker_queue_running",
        "stoker_queue_concurrency_limit",
        "stoker_recurring_schedule_lag_seconds",
        "stoker_recurring_missed_runs_total",
        "stoker_recurring_next_run_timestamp_seconds",
        "stoker_reconcile_errors_total",
        "stoker_build_info",
        "stoker_recurring_last_schedule_timestamp_seconds",
        "stoker_recurring_last_success_timestamp_seconds",
        "stoker_jobs_waiting",
        "stoker_queue_oldest_enqueued_timestamp_seconds",
        "stoker_leader",
    }
)
API_HISTOGRAMS = frozenset(
    {
        "stoker_attempt_duration_seconds",
        "stoker_queue_wait_seconds",
        "stoker_recurring_schedule_lag_seconds",
    }
)
METRIC_NAME = re.compile(r"\bstoker_[a-zA-Z0-9_:]+")

# Each optional feature on its own, then all of them together.
FEATURES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "service-monitor": {"serviceMonitor": {"enabled": True}},
    "prometheus-rule": {"prometheusRule": {"enabled": True}},
    "grafana-dashboard": {"grafanaDashboard": {"enabled": True}},
    "namespaced": {"namespaces": ["shop", "billing"]},
    "ha": {"replicas": 2},
    "no-leader-election": {"leaderElection": {"enabled": False}},
    "no-rbac": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}},
    "no-metrics-service": {"metrics": {"service": {"enabled": False}}},
    "everything": {
        "replicas": 2,
        "namespaces": ["shop"],
        "maxRunning": 20,
        "defaultTtlAfterFinished": "24h",
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "batch"}},
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
        "extraEnv": [{"name": "LOG_LEVEL", "value": "debug"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "batch", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {}},
        "imagePullSecrets": [{"name": "registry"}],
    },
}


def _kube_version() -> str:
    pinned = (REPO / "hack" / "versions.env").read_text()
    match = re.search(r"^KUBERNETES_VERSION=(\S+)$", pinned, re.MULTILINE)
    assert match, "hack/versions.env pins no KUBERNETES_VERSION"
    return match.group(1)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm, from hack/build-control-plane.sh (instant when its cache is warm)."""
    return build_bin_dir() / "helm"


def run_helm(helm: Path, *args: str, values: dict[str, Any] | None = None) -> str:
    """Run helm with `values` on stdin; fail the test with helm's message if it fails."""
    done = _run_helm(helm, *args, values=values)
    if done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _run_helm(
    helm: Path, *args: str, values: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    values_args = [] if values is None else ["--values", "-"]
    return subprocess.run(
        [str(helm), *args, *values_args],
        input=None if values is None else json.dumps(values),
        capture_output=True,
        text=True,
        check=False,
    )


def _template_args(
    *extra: str, release: str = RELEASE, namespace: str = RELEASE_NS
) -> tuple[str, ...]:
    return (
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", _kube_version(), *extra,
    )  # fmt: skip


def render(helm: Path, values: dict[str, Any] | None = None, *extra: str) -> list[dict[str, Any]]:
    out = run_helm(helm, *_template_args(*extra), values=values)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Container env as name -> value, or name -> fieldPath for downward-API entries."""
    env: dict[str, Any] = {}
    for var in container(docs)["env"]:
        assert var["name"] not in env, f"{var['name']} is set twice"
        ref = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[var["name"]] = ref if ref else var["value"]
    return env


def metric_names(text: str) -> set[str]:
    """The API.md metric each stoker_ name in `text` refers to (histogram series included)."""
    names = set()
    for name in METRIC_NAME.findall(text):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        names.add(base if base in API_HISTOGRAMS else name)
    return names


# ------------------------------------------------------------------------------ lint, render


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("feature", FEATURES)
def test_lint(helm: Path, feature: str, strict: bool) -> None:
    flags = ["--strict"] if strict else []
    out = run_helm(helm, "lint", str(CHART), *flags, values=FEATURES[feature])
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("feature", FEATURES)
def test_renders_well_formed_objects(helm: Path, feature: str) -> None:
    docs = render(helm, FEATURES[feature])
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), "two objects share kind, namespace and name"
    for doc in docs:
        assert doc["apiVersion"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ({}, None),
        ({"serviceMonitor": {"enabled": True}}, "ServiceMonitor"),
        ({"prometheusRule": {"enabled": True}}, "PrometheusRule"),
        ({"grafanaDashboard": {"enabled": True}}, "ConfigMap"),
    ],
)
def test_optional_objects_only_when_enabled(
    helm: Path, values: dict[str, Any], kind: str | None
) -> None:
    kinds = {d["kind"] for d in render(helm, values)}
    optional = {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    assert kinds & optional == ({kind} if kind else set())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2, "leaderElection": {"enabled": False}}, "needs leaderElection.enabled"),
        (
            {"serviceMonitor": {"enabled": True}, "metrics": {"service": {"enabled": False}}},
            "needs metrics.service.enabled",
        ),
        ({"maxRuning": 3}, "maxRuning"),
        ({"maxRunning": -1}, "maxRunning"),
        ({"defaultTtlAfterFinished": "1 day"}, "defaultTtlAfterFinished"),
        ({"defaultTtlAfterFinished": "24"}, "defaultTtlAfterFinished"),
        ({"namespaces": "shop,billing"}, "namespaces"),
        ({"namespaces": ["Shop_1"]}, "namespaces"),
        ({"apiQps": 0}, "apiQps"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"prometheusRule": {"queueBacklogFor": "soon"}}, "queueBacklogFor"),
    ],
)
def test_refuses_bad_values(helm: Path, values: dict[str, Any], message: str) -> None:
    done = _run_helm(helm, *_template_args(), values=values)
    assert done.returncode != 0, f"rendered with {values}"
    assert message in done.stderr


def test_needs_a_recent_kubernetes(helm: Path) -> None:
    done = _run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", "1.29.0")
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    keys = ("apiVersion", "name", "version", "appVersion", "kubeVersion")
    assert {k: chart[k] for k in keys} == {
        "apiVersion": "v2",
        "name": "stoker",
        "version": "0.1.0",
        "appVersion": "0.1.0",
        "kubeVersion": ">=1.30.0-0",
    }


# ------------------------------------------------------------------------------ Deployment

CUSTOM = {
    "namespaces": ["shop", "billing"],
    "maxRunning": 7,
    "defaultTtlAfterFinished": "1h30m",
    "apiQps": 12.5,
    "apiBurst": 40,
    "startWriteDelay": "250ms",
    "leaderElection": {"enabled": True, "leaseName": "jobs-leader"},
    "metrics": {"port": 9090},
    "health": {"port": 9091},
}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {},
            {
                "STOKER_NAMESPACES": "",
                "STOKER_MAX_RUNNING": "0",
                "STOKER_DEFAULT_TTL_AFTER_FINISHED": "",
                "STOKER_API_QPS": "100",
                "STOKER_API_BURST": "200",
                "STOKER_START_WRITE_DELAY": "1s",
                "STOKER_METRICS_PORT": "8080",
                "STOKER_HEALTH_PORT": "8081",
                "STOKER_LEADER_ELECTION": "true",
                "STOKER_LEASE_NAME": FULLNAME,
                "STOKER_LEASE_DURATION": "15s",
                "STOKER_LEASE_NAMESPACE": "metadata.namespace",
                "POD_NAMESPACE": "metadata.namespace",
                "STOKER_IDENTITY": "metadata.name",
            },
        ),
        (
            CUSTOM,
            {
                "STOKER_NAMESPACES": "shop,billing",
                "STOKER_MAX_RUNNING": "7",
                "STOKER_DEFAULT_TTL_AFTER_FINISHED": "1h30m",
                "STOKER_API_QPS": "12.5",
                "STOKER_API_BURST": "40",
                "STOKER_START_WRITE_DELAY": "250ms",
                "STOKER_METRICS_PORT": "9090",
                "STOKER_HEALTH_PORT": "9091",
                "STOKER_LEADER_ELECTION": "true",
                "STOKER_LEASE_NAME": "jobs-leader",
                "STOKER_LEASE_DURATION": "15s",
                "STOKER_LEASE_NAMESPACE": "metadata.namespace",
                "POD_NAMESPACE": "metadata.namespace",
                "STOKER_IDENTITY": "metadata.name",
            },
        ),
        ({"leaderElection": {"enabled": False}}, {"STOKER_LEADER_ELECTION": "false"}),
        ({"extraEnv": [{"name": "LOG_LEVEL", "value": "debug"}]}, {"LOG_LEVEL": "debug"}),
    ],
    ids=["defaults", "custom", "no-leader-election", "extra-env"],
)
def test_deployment_env_carries_values(
    helm: Path, values: dict[str, Any], expected: dict[str, str]
) -> None:
    env = env_of(render(helm, values))
    assert {name: env.get(name) for name in expected} == expected


def test_operator_settings_read_what_the_chart_sets(helm: Path) -> None:
    # Stand in for the kubelet's downward API, then read the env as the operator does.
    pod = {"metadata.namespace": RELEASE_NS, "metadata.name": "stoker-7d9f-x2"}
    env = {k: pod.get(v, v) for k, v in env_of(render(helm, CUSTOM)).items()}
    assert Settings.from_env(env) == Settings(
        namespaces=("shop", "billing"),
        max_running=7,
        default_ttl_after_finished=parse_duration("1h30m"),
        api_qps=12.5,
        api_burst=40,
        start_write_delay=parse_duration("250ms"),
        metrics_port=9090,
        health_port=9091,
        leader_election=True,
        lease_name="jobs-leader",
        lease_namespace=RELEASE_NS,
        identity="stoker-7d9f-x2",
    )


def test_default_settings_mean_unlimited_and_keep_finished_jobs(helm: Path) -> None:
    pod = {"metadata.namespace": RELEASE_NS, "metadata.name": "stoker-7d9f-x2"}
    settings = Settings.from_env({k: pod.get(v, v) for k, v in env_of(render(helm)).items()})
    assert settings == Settings(
        lease_name=FULLNAME, lease_namespace=RELEASE_NS, identity="stoker-7d9f-x2"
    )


def test_ports_and_liveness_probe(helm: Path) -> None:
    c = container(render(helm, CUSTOM))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9090, "health": 9091}
    probe = c["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 9091


def test_readiness_probe_reads_healthz_too(helm: Path) -> None:
    # The standby serves /healthz while it waits for the Lease: it counts as ready.
    c = container(render(helm, CUSTOM))
    probe = c["readinessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}


def _anti_affinity(docs: list[dict[str, Any]]) -> Any:
    return one(docs, "Deployment")["spec"]["template"]["spec"].get("affinity")


def test_replicas_prefer_different_nodes(helm: Path) -> None:
    assert _anti_affinity(render(helm)) is None
    (term,) = _anti_affinity(render(helm, {"replicas": 2}))["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    pod_labels = one(render(helm), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    # A given affinity replaces the default.
    given = {"nodeAffinity": {}}
    assert _anti_affinity(render(helm, {"replicas": 2, "affinity": given})) == given


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        ({"replicas": 2}, 1),
        ({"replicas": 3, "podDisruptionBudget": {"maxUnavailable": 2}}, 2),
        ({"replicas": 2, "podDisruptionBudget": {"enabled": False}}, None),
    ],
    ids=["one-replica", "ha", "custom", "disabled"],
)
def test_pod_disruption_budget_only_with_replicas_to_spare(
    helm: Path, values: dict[str, Any], expected: int | None
) -> None:
    docs = render(helm, values)
    budgets = find(docs, "PodDisruptionBudget")
    if expected is None:
        assert budgets == []
        return
    (pdb,) = budgets
    assert pdb["spec"]["maxUnavailable"] == expected
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_image_and_replicas(helm: Path) -> None:
    docs = render(helm, {"replicas": 2, "image": {"repository": "r.example/stoker", "tag": "9"}})
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert container(docs)["image"] == "r.example/stoker:9"
    assert container(render(helm))["image"] == "stoker-operator:0.1.0"


def test_runs_locked_down(helm: Path) -> None:
    docs = render(helm)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    sc = container(docs)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["serviceAccountName"] == FULLNAME


def test_scheduling_values_reach_the_pod(helm: Path) -> None:
    pod = one(render(helm, FEATURES["everything"]), "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists"}]
    assert pod["affinity"] == {"podAntiAffinity": {}}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]


# ------------------------------------------------------------------------------ RBAC

# (apiGroup, resource, verbs) the operator needs wherever it serves jobs: the calls
# stoker.kube.api makes, and no others (pod delete: an attempt ended by its start deadline).
WORKLOAD_GRANTS = [
    ("stoker.dev", "backgroundjobs", "list watch create delete"),
    ("stoker.dev", "backgroundjobs/status", "patch"),
    ("stoker.dev", "recurringjobs", "list watch"),
    ("stoker.dev", "recurringjobs/status", "patch"),
    ("stoker.dev", "jobqueues", "list watch"),
    ("stoker.dev", "jobqueues/status", "patch"),
    ("", "pods", "get list watch create delete"),
    ("", "events", "create"),
]
# Every mode: kopf reads CRDs and follows namespaces (served ones may be created later).
CLUSTER_GRANTS = [
    ("apiextensions.k8s.io", "customresourcedefinitions", "get list watch"),
    ("", "namespaces", "list watch"),
]
LEASE_GRANTS = [("coordination.k8s.io", "leases", "get create update")]

Grant = tuple[str, str, str]


def expand(grants: list[tuple[str, str, str]]) -> set[Grant]:
    return {(group, resource, verb) for group, resource, verbs in grants for verb in verbs.split()}


def granted(rules: list[dict[str, Any]], resource_name: str | None = None) -> set[Grant]:
    """Every (group, resource, verb) the rules allow, on `resource_name` if they name objects."""
    out = set()
    for rule in rules:
        names = rule.get("resourceNames")
        if names and resource_name not in names:
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out |= {(group, resource, verb) for verb in rule["verbs"]}
    return out


def bound_rules(
    docs: list[dict[str, Any]], namespace: str | None, subject_ns: str = RELEASE_NS
) -> list[dict[str, Any]]:
    """Rules bound to the operator's ServiceAccount cluster-wide (namespace None) or in one
    namespace, following each binding to its role as the apiserver does."""
    binding_kind, role_kind = (
        ("ClusterRoleBinding", "ClusterRole") if namespace is None else ("RoleBinding", "Role")
    )
    rules: list[dict[str, Any]] = []
    for binding in find(docs, binding_kind):
        if binding["metadata"].get("namespace") != namespace:
            continue
        subjects = {(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]}
        if ("ServiceAccount", FULLNAME, subject_ns) not in subjects:
            continue
        ref = binding["roleRef"]
        assert ref["kind"] == role_kind
        roles = find(docs, role_kind, ref["name"])
        (role,) = [r for r in roles if r["metadata"].get("namespace") == namespace]
        rules += role["rules"]
    return rules


def test_rbac_cluster_wide_grants_exactly_what_the_operator_needs(helm: Path) -> None:
    docs = render(helm)
    assert granted(bound_rules(docs, None)) == expand(WORKLOAD_GRANTS + CLUSTER_GRANTS)
    assert not find(docs, "Role", FULLNAME)


@pytest.mark.parametrize("namespaces", [["shop"], ["shop", "billing", "ops"]])
def test_rbac_namespaced_grants_workload_rules_per_namespace_only(
    helm: Path, namespaces: list[str]
) -> None:
    docs = render(helm, {"namespaces": namespaces})
    assert granted(bound_rules(docs, None)) == expand(CLUSTER_GRANTS)
    for ns in namespaces:
        assert granted(bound_rules(docs, ns)) == expand(WORKLOAD_GRANTS)
    served = {r["metadata"]["namespace"] for r in find(docs, "Role", FULLNAME)}
    assert served == set(namespaces)


def _grant_id(grant: Grant) -> str:
    group, resource, verb = grant
    return f"{group or 'core'}/{resource}/{verb}"


@pytest.mark.parametrize("grant", sorted(expand(WORKLOAD_GRANTS)), ids=_grant_id)
@pytest.mark.parametrize("namespaces", [[], ["shop"]], ids=["cluster-wide", "namespaced"])
def test_rbac_covers(helm: Path, namespaces: list[str], grant: Grant) -> None:
    docs = render(helm, {"namespaces": namespaces})
    rules = bound_rules(docs, namespaces[0] if namespaces else None)
    assert grant in granted(rules)


def test_rbac_operator_deletes_pods_only_where_it_serves_jobs(helm: Path) -> None:
    docs = render(helm, {"namespaces": ["shop"]})
    assert ("", "pods", "delete") in granted(bound_rules(docs, "shop"))
    assert ("", "pods", "delete") not in granted(bound_rules(docs, None))


# (apiGroup, resource, verbs) a user gets on Stoker's objects with the built-in roles.
VIEW_GRANTS = [
    ("stoker.dev", resource, "get list watch")
    for resource in (
        "backgroundjobs", "recurringjobs", "jobqueues",
        "backgroundjobs/status", "recurringjobs/status", "jobqueues/status",
    )
]  # fmt: skip
EDIT_GRANTS = [
    ("stoker.dev", resource, "create update patch delete deletecollection")
    for resource in ("backgroundjobs", "recurringjobs", "jobqueues")
]
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def test_user_roles_aggregate_into_the_built_in_roles(helm: Path) -> None:
    docs = render(helm)
    view, edit = (
        one(docs, "ClusterRole", f"{FULLNAME}-view"),
        one(docs, "ClusterRole", f"{FULLNAME}-edit"),
    )
    into = {
        role["metadata"]["name"]: {
            k.removeprefix(AGGREGATE) for k, v in role["metadata"]["labels"].items()
            if k.startswith(AGGREGATE) and v == "true"
        }
        for role in (view, edit)
    }  # fmt: skip
    assert into == {
        f"{FULLNAME}-view": {"view", "edit", "admin"},
        f"{FULLNAME}-edit": {"edit", "admin"},
    }
    assert granted(view["rules"]) == expand(VIEW_GRANTS)
    assert granted(edit["rules"]) == expand(EDIT_GRANTS)
    # Not the operator's: no binding names them.
    bound = {b["roleRef"]["name"] for b in find(docs, "ClusterRoleBinding")}
    assert not bound & {f"{FULLNAME}-view", f"{FULLNAME}-edit"}


def test_user_roles_can_be_left_out(helm: Path) -> None:
    docs = render(helm, {"rbac": {"aggregateToDefaultRoles": False}})
    assert not find(docs, "ClusterRole", f"{FULLNAME}-view")
    assert not find(docs, "ClusterRole", f"{FULLNAME}-edit")


def test_rbac_lease_only_in_release_namespace_and_only_ours(helm: Path) -> None:
    docs = render(helm, {"namespaces": ["shop"], "leaderElection": {"leaseName": "jobs-leader"}})
    rules = bound_rules(docs, RELEASE_NS)
    assert granted(rules, "jobs-leader") == expand(LEASE_GRANTS)
    assert granted(rules, "someone-elses-lease") == {("coordination.k8s.io", "leases", "create")}
    assert not expand(LEASE_GRANTS) & granted(bound_rules(docs, None))


def test_rbac_no_lease_role_without_leader_election(helm: Path) -> None:
    docs = render(helm, {"leaderElection": {"enabled": False}})
    assert not find(docs, "Role")


def test_rbac_never_uses_wildcards(helm: Path) -> None:
    for doc in render(helm, FEATURES["everything"]) + render(helm):
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_rbac_off_creates_no_rbac_and_uses_the_named_account(helm: Path) -> None:
    docs = render(helm, FEATURES["no-rbac"])
    rbac = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    assert not {d["kind"] for d in docs} & rbac
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"


# ------------------------------------------------------------------------------ CRDs


def _yaml_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.yaml"))}


def test_chart_crds_are_copies_of_the_generated_crds() -> None:
    generated = _yaml_files(REPO / "crds")
    assert generated, "crds/ holds no CRDs"
    assert _yaml_files(CHART / "crds") == generated, (
        "charts/stoker/crds/ differs from crds/: cp crds/*.yaml charts/stoker/crds/"
    )
    assert not any(p.is_symlink() for p in (CHART / "crds").iterdir())


def test_crds_install_with_the_chart(helm: Path) -> None:
    crds = find(render(helm, None, "--include-crds"), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {
        "backgroundjobs.stoker.dev",
        "recurringjobs.stoker.dev",
        "jobqueues.stoker.dev",
    }


# ------------------------------------------------------------------------------ monitoring


def test_metrics_service_reaches_the_metrics_port(helm: Path) -> None:
    docs = render(helm)
    service = one(docs, "Service", f"{FULLNAME}-metrics")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container(docs)["ports"]}
    assert port["targetPort"] == "metrics"


def test_service_monitor_scrapes_the_metrics_service(helm: Path) -> None:
    docs = render(helm, FEATURES["everything"])
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [RELEASE_NS]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The operator's `namespace` label names the jobs' namespace, not the target's.
    assert endpoint["honorLabels"] is True


def _alerts(helm: Path, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rule = one(render(helm, values), "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_prometheus_rule_alerts(helm: Path) -> None:
    alerts = _alerts(helm, FEATURES["everything"])
    assert {
        "StokerOperatorDown",
        "StokerJobsFailing",
        "StokerQueueBacklog",
        "StokerReconcileErrors",
        "StokerRecurringMissedRuns",
    } <= alerts.keys()
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["labels"]["team"] == "batch", name
        assert alert["annotations"]["summary"], name
    assert (
        'up{job="stoker-metrics", namespace="stoker-system"}'
        in alerts["StokerOperatorDown"]["expr"]
    )
    # Prometheus, not helm, expands alert templates.
    assert "{{ $labels.queue }}" in alerts["StokerQueueBacklog"]["annotations"]["description"]


@pytest.mark.parametrize(
    ("alert", "values", "needle"),
    [
        ("StokerJobsFailing", {"jobsFailingRatio": 0.25}, "> 0.25"),
        ("StokerQueueBacklog", {"queueBacklog": 7}, "> 7"),
    ],
)
def test_prometheus_rule_thresholds_come_from_values(
    helm: Path, alert: str, values: dict[str, Any], needle: str
) -> None:
    alerts = _alerts(helm, {"prometheusRule": {"enabled": True, **values}})
    assert needle in alerts[alert]["expr"]


def test_prometheus_rule_uses_only_api_metrics(helm: Path) -> None:
    alerts = _alerts(helm, FEATURES["prometheus-rule"])
    used = set().union(*(metric_names(a["expr"]) for a in alerts.values()))
    assert used, "no stoker_ metric in any alert"
    assert used <= API_METRICS, f"not in API.md: {sorted(used - API_METRICS)}"


def _dashboard_text() -> str:
    return (CHART / "dashboards" / "stoker.json").read_text()


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(_dashboard_text())
    assert dashboard["uid"] == "stoker"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["expr"] and target["datasource"]["uid"] == "${datasource}"


def test_dashboard_uses_only_and_all_api_metrics() -> None:
    used = metric_names(_dashboard_text())
    assert used <= API_METRICS, f"not in API.md: {sorted(used - API_METRICS)}"
    assert used == API_METRICS, f"no panel for {sorted(API_METRICS - used)}"


def test_dashboard_quantiles_read_histogram_buckets() -> None:
    exprs = [
        t["expr"] for p in json.loads(_dashboard_text())["panels"] for t in p.get("targets", [])
    ]
    quantiles = [e for e in exprs if "histogram_quantile" in e]
    levels = {q for e in quantiles for q in re.findall(r"histogram_quantile\(([0-9.]+)", e)}
    assert levels == {"0.5", "0.95", "0.99"}
    for expr in quantiles:
        assert "by (le)" in expr and re.search(r"stoker_\w+_bucket[{\[]", expr), expr


def test_dashboard_configmap_for_the_grafana_sidecar(helm: Path) -> None:
    docs = render(helm, FEATURES["everything"])
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert json.loads(cm["data"]["stoker.json"]) == json.loads(_dashboard_text())


def _iter_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _iter_strings(item)


def test_rendered_chart_names_only_api_metrics(helm: Path) -> None:
    text = " ".join(_iter_strings(render(helm, FEATURES["everything"])))
    used = metric_names(text)
    assert used <= API_METRICS, f"not in API.md: {sorted(used - API_METRICS)}"


# ------------------------------------------------------------------------------ real apiserver
# The release is named after the test's namespace, so cluster-scoped objects never collide.


def _sa_user(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{namespace}-stoker"


def can_i(cluster: Cluster, user: str, verb: str, resource: str, *where: str) -> bool:
    """`kubectl auth can-i` as `user`: the apiserver's own RBAC answer."""
    try:
        cluster.kubectl("auth", "can-i", verb, resource, "--as", user, *where)
    except KubectlError as refused:
        if refused.returncode == 1:
            return False
        raise
    return True


def _resource_args(group: str, resource: str) -> list[str]:
    name, _, sub = resource.partition("/")
    qualified = f"{name}.{group}" if group else name
    return [qualified, f"--subresource={sub}"] if sub else [qualified]


# ServiceMonitor and PrometheusRule need prometheus-operator's CRDs, which the test cluster lacks.
@pytest.mark.parametrize("feature", ["defaults", "namespaced", "ha", "grafana-dashboard"])
def test_server_side_dry_run(cluster: Cluster, namespace: str, feature: str) -> None:
    values = FEATURES[feature] | ({"namespaces": [namespace]} if feature == "namespaced" else {})
    manifests = run_helm(
        cluster.bin_dir / "helm",
        *_template_args("--include-crds", release=namespace, namespace=namespace),
        values=values,
    )
    docs = [d for d in yaml.safe_load_all(manifests) if d]
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole"} <= {d["kind"] for d in docs}
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests)
    assert out.count("(server dry run)") == len(docs), out


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-wide", "namespaced"])
def test_installed_chart_grants_the_operator_what_it_needs(
    cluster: Cluster, namespace: str, namespaced: bool
) -> None:
    helm_bin, kubeconfig = cluster.bin_dir / "helm", str(cluster.kubeconfig)
    values = {"namespaces": [namespace]} if namespaced else {}
    run_helm(
        helm_bin, "install", namespace, str(CHART), "--namespace", namespace,
        "--kubeconfig", kubeconfig, values=values,
    )  # fmt: skip
    try:
        user = _sa_user(namespace)
        for group, resource, verb in sorted(expand(WORKLOAD_GRANTS)):
            what = _resource_args(group, resource)
            assert can_i(cluster, user, verb, *what, "--namespace", namespace), (verb, what)
        lease = f"leases.coordination.k8s.io/{namespace}-stoker"
        for verb in ("get", "update"):
            assert can_i(cluster, user, verb, lease, "--namespace", namespace)
        assert can_i(cluster, user, "create", "leases.coordination.k8s.io", "-n", namespace)
        for verb in ("get", "list", "watch"):
            assert can_i(cluster, user, verb, "customresourcedefinitions.apiextensions.k8s.io")
        # Least privilege: nothing beyond the served namespaces, never secrets.
        assert can_i(cluster, user, "list", "pods", "--all-namespaces") is not namespaced
        assert not can_i(cluster, user, "get", "secrets", "--namespace", namespace)
        assert not can_i(
            cluster, user, "update", "leases.coordination.k8s.io/other", "-n", namespace
        )
        assert can_i(cluster, user, "delete", "pods", "-n", "kube-system") is not namespaced
    finally:
        run_helm(
            helm_bin, "uninstall", namespace, "--namespace", namespace, "--kubeconfig", kubeconfig
        )


def test_built_in_roles_carry_stoker_after_install(cluster: Cluster, namespace: str) -> None:
    """Someone bound to the built-in edit role in a namespace can enqueue jobs there; view
    reads them; neither writes .status (the operator's)."""
    helm_bin, kubeconfig = cluster.bin_dir / "helm", str(cluster.kubeconfig)
    run_helm(
        helm_bin, "install", namespace, str(CHART), "--namespace", namespace,
        "--kubeconfig", kubeconfig,
    )  # fmt: skip
    editor, viewer = f"{namespace}-editor", f"{namespace}-viewer"
    for user, role in ((editor, "edit"), (viewer, "view")):
        cluster.kubectl(
            "create", "rolebinding", user, f"--clusterrole={role}", f"--user={user}",
            "--namespace", namespace,
        )  # fmt: skip
    try:
        bgj = "backgroundjobs.stoker.dev"

        def aggregated() -> bool:
            # The controller-manager copies the rules into edit/view shortly after install.
            return can_i(cluster, editor, "create", bgj, "-n", namespace) and can_i(
                cluster, viewer, "list", bgj, "-n", namespace
            )

        wait_for(aggregated, timeout=30, description="stoker rules aggregated into edit/view")
        for verb in ("create", "patch", "delete", "get", "list", "watch"):
            for resource in ("backgroundjobs", "recurringjobs", "jobqueues"):
                assert can_i(cluster, editor, verb, f"{resource}.stoker.dev", "-n", namespace)
        for verb in ("get", "list", "watch"):
            assert can_i(cluster, viewer, verb, "recurringjobs.stoker.dev", "-n", namespace)
        assert not can_i(cluster, viewer, "create", bgj, "-n", namespace)
        status = (bgj, "--subresource=status", "-n", namespace)
        assert not can_i(cluster, editor, "patch", *status)
        # Only in the namespace of the binding.
        assert not can_i(cluster, editor, "create", bgj, "-n", "default")
    finally:
        run_helm(
            helm_bin, "uninstall", namespace, "--namespace", namespace, "--kubeconfig", kubeconfig
        )
