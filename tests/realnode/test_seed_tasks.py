"""The example tasks executed for real: the runner image on the real node runs them against a
PostgreSQL and an SMTP sink started on this machine (tests/realnode/services.py), with the
operator as a local process. Each test asserts on the effect (rows, mail), not only on phases.

The jobs go to a JobQueue whose template carries the runner image and the services' env, as
in examples/seeds.yaml: a job names only its task."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import kubernetes
import pytest
from realnode_kit import GROUP, ON_REAL_NODE, REPO, RUNNER_IMAGE, VERSION, apply, get_json
from services import Inbox, Postgres, postgres, smtp_sink

from harness import Cluster, apply_crds, wait_for
from operator_process import Operator
from stoker.client import Call, Client, JobHandle, JobOptions

SCHEMA = REPO / "job_images" / "runner" / "examples" / "schema.sql"
QUEUE = "seeds"
GRACE_SECONDS = 30  # the queue template's terminationGracePeriodSeconds
CANCEL_GRACE_SECONDS = 20  # the runner's own limit, below the kubelet's grace


@pytest.fixture(scope="module")
def gateway(cluster: Cluster, real_node: str) -> str:
    """This machine's address on the pod bridge: the only one pods on the real node reach."""
    assert cluster.pod_apiserver
    return cluster.pod_apiserver.rpartition(":")[0]


@pytest.fixture(scope="module")
def db(gateway: str) -> Iterator[Postgres]:
    with postgres(gateway, SCHEMA) as started:
        yield started


@pytest.fixture(scope="module")
def inbox(gateway: str) -> Iterator[Inbox]:
    with smtp_sink(["127.0.0.1", gateway]) as sink:
        yield sink


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    apply_crds(cluster)
    op = Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"operator log: {op.log_path}")


def pod_template(db: Postgres, inbox: Inbox, gateway: str) -> dict[str, Any]:
    env = [
        {"name": "DATABASE_URL", "value": db.pod_url},
        {"name": "SMTP_HOST", "value": gateway},
        {"name": "SMTP_PORT", "value": str(inbox.port)},
        {"name": "STOKER_CANCEL_GRACE_SECONDS", "value": str(CANCEL_GRACE_SECONDS)},
    ]
    container = {"name": "main", "image": RUNNER_IMAGE, "imagePullPolicy": "Never", "env": env}
    return {
        "spec": {
            **ON_REAL_NODE,
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "containers": [container],
        }
    }


@pytest.fixture
def shop(
    cluster: Cluster, namespace: str, operator: Operator, db: Postgres, inbox: Inbox, gateway: str
) -> Iterator[Client]:
    """A namespace with the seeds queue (its template: the runner image and the services'
    env), and an application's client with the same template."""
    template = pod_template(db, inbox, gateway)
    queue = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobQueue",
        "metadata": {"name": QUEUE},
        "spec": {"concurrency": 4, "template": template},
    }
    apply(cluster, namespace, queue)
    api = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-seeds"))
    with Client(namespace, api=api, template=template) as client:
        yield client


def recurring(name: str, schedule: str, task: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RecurringJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"queue": QUEUE, "task": {"name": task, "args": args}}},
        },
    }


def phase(client: Client, job: JobHandle) -> str | None:
    found: str | None = (client.get(job).get("status") or {}).get("phase")
    return found


def wait_succeeded(client: Client, job: JobHandle, timeout: float = 180) -> dict[str, Any]:
    def done() -> bool:
        got = phase(client, job)
        assert got != "Failed", json.dumps(client.get(job).get("status"), indent=1)
        return got == "Succeeded"

    wait_for(done, timeout=timeout, interval=0.5, description=f"job {job.name} Succeeded")
    status: dict[str, Any] = client.get(job)["status"]
    return status


def trigger_and_wait(cluster: Cluster, client: Client, namespace: str, name: str) -> JobHandle:
    """Annotate the RecurringJob (stoker.dev/trigger) and wait for the run it creates."""
    client.trigger(name)

    def created() -> str | None:
        items = get_json(
            cluster, "backgroundjobs", "-n", namespace, "-l", f"stoker.dev/recurring-job={name}"
        )["items"]
        return items[0]["metadata"]["name"] if items else None

    job = JobHandle(namespace, wait_for(created, timeout=60, description=f"a run of {name}"))
    wait_succeeded(client, job)
    return job


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------ the tests


def test_daily_recurring_job_deletes_expired_jwt_tokens(
    cluster: Cluster, namespace: str, shop: Client, db: Postgres
) -> None:
    db.sql(
        "INSERT INTO jwt_tokens (user_id, token, expires_at) VALUES"
        " (1, 'expired-1', now() - interval '2 days'), (2, 'expired-2', now() - interval '1 hour'),"
        " (3, 'valid-3', now() + interval '1 day')"
    )
    apply(
        cluster,
        namespace,
        recurring("purge-jwt-tokens", "@daily", "accounts.delete_expired_tokens", {}),
    )
    trigger_and_wait(cluster, shop, namespace, "purge-jwt-tokens")
    assert db.sql("SELECT token FROM jwt_tokens ORDER BY id") == [["valid-3"]]


def test_api_enqueue_sends_the_welcome_email_to_the_args_address(
    cluster: Cluster, namespace: str, shop: Client, inbox: Inbox
) -> None:
    address = f"user-{uuid.uuid4().hex[:8]}@example.com"
    started = time.monotonic()
    # What an API does on a request: Hangfire's Enqueue names only the task; the queue has the code.
    api = kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="shop-api"))
    bare = Client(namespace=namespace, api=api)
    job = bare.enqueue("mail.send_welcome", {"user_id": 4242, "email": address}, queue=QUEUE)
    assert "template" not in bare.get(job)["spec"]
    (message,) = wait_for(
        lambda: inbox.to(address), timeout=180, interval=0.2, description=f"mail to {address}"
    )
    print(f"enqueue -> welcome email in the inbox: {time.monotonic() - started:.1f}s")
    assert message["To"] == address
    assert message["Subject"] == "Welcome to the shop"
    assert "account number is 4242" in message.get_content()
    wait_succeeded(shop, job)


def test_recurring_invoice_invalidation_voids_overdue_invoices(
    cluster: Cluster, namespace: str, shop: Client, db: Postgres
) -> None:
    db.sql(
        "INSERT INTO invoices (customer, due_date, status) VALUES"
        " ('overdue', current_date - 10, 'open'), ('paid', current_date - 10, 'paid'),"
        " ('not-due', current_date + 10, 'open')"
    )
    apply(
        cluster,
        namespace,
        recurring(
            "void-overdue-invoices",
            "0 3 * * *",
            "billing.invalidate_overdue_invoices",
            {"grace_days": 7},
        ),
    )
    trigger_and_wait(cluster, shop, namespace, "void-overdue-invoices")
    assert db.sql("SELECT customer, status FROM invoices ORDER BY id") == [
        ["overdue", "void"],
        ["paid", "paid"],
        ["not-due", "open"],
    ]


def test_continuation_chain_writes_its_rows_in_order(shop: Client, db: Postgres) -> None:
    step = "orders.record_step"
    first = shop.enqueue(step, {"order_id": 100, "step": "reserved"}, queue=QUEUE)
    second = shop.continue_with(first, step, {"order_id": 100, "step": "charged"}, queue=QUEUE)
    third = shop.continue_with(second, step, {"order_id": 100, "step": "shipped"}, queue=QUEUE)
    wait_succeeded(shop, third)
    assert db.sql("SELECT step, job FROM order_events WHERE order_id = 100 ORDER BY id") == [
        ["reserved", first.name],
        ["charged", second.name],
        ["shipped", third.name],
    ]


def test_batch_with_a_continuation_ships_after_every_item_is_packed(
    shop: Client, db: Postgres
) -> None:
    items = ["book", "lamp", "mug"]
    on_queue = JobOptions(queue=QUEUE)
    batch = shop.batch(
        [
            Call("orders.record_step", {"order_id": 200, "step": f"packed {i}"}, on_queue)
            for i in items
        ],
        then=Call("orders.ship", {"order_id": 200, "items": items}, on_queue),
    )
    assert batch.continuation is not None
    wait_succeeded(shop, batch.continuation)
    rows = db.sql("SELECT step, job FROM order_events WHERE order_id = 200 ORDER BY id")
    # The packing jobs ran side by side (any order); shipping came after all of them.
    assert sorted(rows[:3]) == sorted(
        [[f"packed {i}", job.name] for i, job in zip(items, batch.jobs, strict=True)]
    )
    assert rows[3:] == [["shipped", batch.continuation.name]]


def test_a_task_failing_twice_is_retried_after_the_delays_and_charges_once(
    shop: Client, db: Postgres
) -> None:
    delays = [3, 6]
    job = shop.enqueue(
        "payments.charge",
        {"order_id": 300, "amount_cents": 1999, "gateway_down_attempts": 2},
        queue=QUEUE,
        retry={"attempts": 3, "delays": [f"{d}s" for d in delays]},
    )
    status = wait_succeeded(shop, job, timeout=240)
    assert db.sql("SELECT order_id, amount_cents, attempt FROM charges WHERE order_id = 300") == [
        ["300", "1999", "3"]
    ]
    history = status["attempts"]
    assert [(a["attempt"], a["result"]) for a in history] == [
        (1, "Failed"), (2, "Failed"), (3, "Succeeded"),
    ]  # fmt: skip
    assert [a.get("exitCode") for a in history[:2]] == [75, 75]
    assert "payment gateway unavailable (attempt 1)" in history[0]["message"]
    # Each attempt started no sooner than its delay after the previous one ended (the pods'
    # rows, by the database's clock, are later still).
    for before, after, delay in zip(history[:-1], history[1:], delays, strict=True):
        assert (ts(after["startedAt"]) - ts(before["finishedAt"])).total_seconds() >= delay - 1
    ((one,), (two,), (three,)) = db.sql(
        "SELECT extract(epoch FROM at) FROM payment_attempts WHERE order_id = 300 ORDER BY attempt"
    )
    assert float(two) - float(one) >= delays[0]
    assert float(three) - float(two) >= delays[1]


def test_daily_summary_email_and_hourly_session_expiry_run_when_triggered(
    cluster: Cluster, namespace: str, shop: Client, db: Postgres, inbox: Inbox
) -> None:
    db.sql(
        "INSERT INTO sessions (user_id, last_seen) VALUES"
        " (500, now() - interval '3 hours'), (501, now() - interval '5 minutes')"
    )
    to = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    apply(
        cluster,
        namespace,
        recurring("daily-summary", "0 7 * * *", "mail.daily_summary", {"to": to}),
        recurring("expire-sessions", "@hourly", "accounts.expire_sessions", {"idle_minutes": 60}),
    )
    trigger_and_wait(cluster, shop, namespace, "expire-sessions")
    assert db.sql("SELECT user_id, expired FROM sessions WHERE user_id >= 500 ORDER BY id") == [
        ["500", "t"],
        ["501", "f"],
    ]
    trigger_and_wait(cluster, shop, namespace, "daily-summary")
    (message,) = inbox.to(to)
    assert message["Subject"] == "Daily summary"
    assert "Active sessions:" in message.get_content()


def test_deleting_a_running_job_stops_the_task_within_the_grace_period(
    cluster: Cluster, namespace: str, shop: Client, db: Postgres
) -> None:
    job = shop.enqueue(
        "imports.import_customers", {"batches": 600, "seconds_per_batch": 1.0}, queue=QUEUE
    )
    wait_for(
        lambda: db.sql(f"SELECT state FROM import_runs WHERE job = '{job.name}'") == [["running"]],
        timeout=180,
        interval=0.5,
        description=f"the import of {job.name} running",
    )
    time.sleep(2)  # a couple of batches in
    (deleted_at,) = db.sql("SELECT now()")[0]
    assert shop.delete(job)
    wait_for(
        lambda: (
            not get_json(cluster, "pods", "-n", namespace, "-l", f"stoker.dev/job-name={job.name}")[
                "items"
            ]
        ),
        timeout=GRACE_SECONDS + 60,
        description=f"the pod of {job.name} gone",
    )
    ((state, batches, seconds),) = db.sql(
        "SELECT state, batches, extract(epoch FROM stopped_at - "
        f"'{deleted_at}'::timestamptz) FROM import_runs WHERE job = '{job.name}'"
    )
    # SIGTERM reached the task: it stopped at a batch boundary and said so before exiting,
    # well before the kubelet's SIGKILL would have ended it.
    assert state == "stopped"
    assert 1 <= int(batches) < 600
    assert float(seconds) < GRACE_SECONDS
    print(f"delete -> task stopped: {float(seconds):.1f}s (grace {GRACE_SECONDS}s)")


def test_the_seeds_manifests_are_accepted_by_the_api(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    """examples/seeds.yaml, which a user reads and applies, passes the CRDs' validation."""
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(REPO / "examples" / "seeds.yaml")
    )
    assert out.count("created (server dry run)") == 14, out
