"""Queue templates and defaults: a job names only its task, its queue carries the code."""

from __future__ import annotations

from jobs_api import Jobs, job_spec


def test_a_job_without_template_waits_for_its_queue_then_runs_with_the_queues_pod(
    jobs: Jobs,
) -> None:
    jobs.create("workers", {}, kind="JobQueue", plural="jobqueues")
    jobs.create("bare", {"queue": "workers", "task": {"name": "send", "args": {"to": "a@x"}}})
    status = jobs.wait_phase("bare", "Enqueued")
    jobs.wait(lambda: jobs.status("bare").get("reason") == "NoPodTemplate", 30, "NoPodTemplate")
    assert status.get("attempt", 0) == 0 and jobs.pods("bare") == []

    template = job_spec()["template"]
    template["spec"]["containers"][0]["image"] = "registry.local/workers:7"
    jobs.patch_spec("workers", {"template": template}, "jobqueues")
    jobs.wait_phase("bare", "Succeeded")
    [pod] = jobs.pods("bare")
    assert pod.spec.containers[0].image == "registry.local/workers:7"
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert (env["STOKER_TASK"], env["STOKER_ARGS"]) == ("send", '{"to":"a@x"}')
    # Nothing was copied into the job: GitOps sees the spec it applied.
    assert "template" not in jobs.get("bare")["spec"]


def test_queue_defaults_apply_where_the_job_sets_nothing(jobs: Jobs) -> None:
    jobs.create(
        "retrying",
        {"defaults": {"retry": {"attempts": 2, "delays": ["1s"]}, "timeout": "5m"}},
        kind="JobQueue",
        plural="jobqueues",
    )
    jobs.create("inherits", job_spec(sim={"fail-attempts": "1"}, queue="retrying"))
    jobs.create(
        "own-policy",
        job_spec(sim={"fail-attempts": "1"}, queue="retrying", retry={"attempts": 0}),
    )
    assert jobs.wait_phase("inherits", "Succeeded")["attempt"] == 2
    assert jobs.wait_phase("own-policy", "Failed")["reason"] == "AttemptsExhausted"
    deadlines = {p.metadata.name: p.spec.active_deadline_seconds for p in jobs.pods("inherits")}
    assert deadlines == {"inherits-1": 300, "inherits-2": 300}
