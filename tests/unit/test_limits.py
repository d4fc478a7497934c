"""Limits that protect every other tenant, and queue templates: pure decisions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_lifecycle import T0, job

from stoker.api.models import BackgroundJobSpec, JobQueueSpec, RetryPolicy
from stoker.core.defaults import effective_spec
from stoker.core.lifecycle import JobView, decide, dependency_cycle, nesting_depth


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ({}, 1), ([], 1), ({"a": [1, {"b": []}]}, 4), (nested(32), 32), (nested(5000), 5000)],
)
def test_nesting_depth_is_counted_without_recursion(value: Any, depth: int) -> None:
    assert nesting_depth(value) == depth


def test_args_nested_deeper_than_32_levels_fail_the_job() -> None:
    plan = decide(job({"task": {"name": "t", "args": nested(33)}}), [], {}, T0)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "InvalidSpec")
    assert plan.status.message == "task.args nests 33 levels deep; the limit is 32"
    assert plan.ready_attempt is None


def test_args_nested_32_levels_are_fine() -> None:
    plan = decide(job({"task": {"name": "t", "args": nested(32)}}), [], {}, T0)
    assert plan.ready_attempt == 1


def test_start_at_more_than_ten_years_after_creation_fails_the_job() -> None:
    far = T0 + timedelta(days=3653)
    plan = decide(job({"startAt": far.isoformat()}), [], {}, T0)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "InvalidSpec")
    assert "more than 10 years" in (plan.status.message or "")
    near = T0 + timedelta(days=3651)
    assert decide(job({"startAt": near.isoformat()}), [], {}, T0).status.phase == "Scheduled"


# ---------------------------------------------------------------- continuation cycles


GRAPH = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["f", "g"], "f": [], "g": ["f"]}


@pytest.mark.parametrize(
    ("start", "cycle"),
    [("a", ["a", "b", "c", "a"]), ("b", ["b", "c", "a", "b"]), ("d", None), ("e", None),
     ("missing", None)],
)  # fmt: skip
def test_dependency_cycle(start: str, cycle: list[str] | None) -> None:
    assert dependency_cycle(start, GRAPH.get) == cycle


def test_a_long_chain_is_searched_without_recursion() -> None:
    chain = {f"j{i}": [f"j{i + 1}"] for i in range(20000)}
    chain["j20000"] = ["j0"]
    found = dependency_cycle("j0", chain.get)
    assert found is not None and len(found) == 20002


def test_a_job_in_a_cycle_fails_with_dependency_cycle() -> None:
    view = job({"after": [{"name": "b"}]}, name="a")
    plan = decide(view, [], {"b": None}, T0, cycle=["a", "b", "a"])
    assert (plan.status.phase, plan.status.reason) == ("Failed", "DependencyCycle")
    assert plan.status.message == "jobs wait for each other: a -> b -> a"
    assert [e.reason for e in plan.events] == ["DependencyCycle"]


# ---------------------------------------------------------------- queue templates and defaults

TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "tasks:1"}]}}


def bare(spec: dict[str, Any] | None = None) -> BackgroundJobSpec:
    return BackgroundJobSpec.model_validate(spec or {})


def test_a_job_without_template_takes_its_queues() -> None:
    queue = JobQueueSpec.model_validate({"template": TEMPLATE})
    spec = effective_spec(bare({"task": {"name": "t"}}), queue)
    assert spec.template is not None and spec.template.spec.containers[0]["image"] == "tasks:1"


def test_the_jobs_own_template_wins() -> None:
    own = {"spec": {"containers": [{"name": "main", "image": "own:2"}]}}
    queue = JobQueueSpec.model_validate({"template": TEMPLATE})
    spec = effective_spec(bare({"template": own}), queue)
    assert spec.template is not None and spec.template.spec.containers[0]["image"] == "own:2"


def test_queue_defaults_fill_only_what_the_job_leaves_unset() -> None:
    queue = JobQueueSpec.model_validate(
        {"defaults": {"retry": {"attempts": 7, "delays": ["1s"]}, "timeout": "5m"}}
    )
    filled = effective_spec(bare(), queue)
    assert filled.retry.attempts == 7 and filled.retry.delays == ["1s"]
    assert filled.timeout == "5m"
    own = effective_spec(bare({"retry": {"attempts": 1}, "timeout": "1m"}), queue)
    assert own.retry == RetryPolicy(attempts=1)
    assert own.timeout == "1m"


def test_no_queue_changes_nothing() -> None:
    spec = bare({"task": {"name": "t"}})
    assert effective_spec(spec, None) is spec


def test_a_job_with_no_template_anywhere_waits_with_no_pod_template() -> None:
    view = job()
    view = JobView(**{**view.__dict__, "spec": bare({"queue": "work"})})
    plan = decide(view, [], {}, T0)
    assert (plan.status.phase, plan.status.reason) == ("Enqueued", "NoPodTemplate")
    assert plan.status.message == "the job has no pod template and neither has its queue work"
    assert plan.ready_attempt is None
