"""The `stoker` command (also the kubectl plugin `kubectl-stoker`): the Hangfire dashboard's
actions on the command line, in kubectl's conventions, plus `operator` and `crds`.

Exit status: 0 done, 1 an error the user can fix (one line on stderr), 2 a usage error.
Shell completion: eval "$(_STOKER_COMPLETE=bash_source stoker)" (zsh_source, fish_source).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn, TypeVar, cast

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem

from stoker.api.durations import parse_duration
from stoker.api.models import (
    DEFAULT_QUEUE,
    FINISHED_PHASES,
    GROUP,
    VERSION,
    now_utc,
)
from stoker.cli import describe, stats, tables
from stoker.cli.cluster import CommandError, Target, not_found, one_line
from stoker.cli.kinds import Kind
from stoker.client import AfterCondition, Client, JobOptions

F = TypeVar("F", bound=Callable[..., Any])
PHASES = ("Awaiting", "Scheduled", "Enqueued", "Running", "Succeeded", "Failed")
LOG_WAIT_SECONDS = 300.0


# ---------------------------------------------------------------- errors, exit codes


class Failure(click.ClickException):
    """One line on stderr, exit status 1 (click's own usage errors exit 2)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


class StokerGroup(click.Group):
    """Turns every error of a command into one line and exit status 1: no tracebacks.

    Lists the commands in the order they are defined (the dashboard's order), not A to Z."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except CommandError as exc:
            raise Failure(str(exc)) from None
        except Exception as exc:
            if ctx.invoked_subcommand == "operator":
                raise  # a crashing operator's traceback belongs in its log
            raise Failure(one_line(exc)) from None
        finally:
            target = ctx.find_object(Target)
            if target is not None:
                target.close()


# ---------------------------------------------------------------- kubectl's flags


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Given on the group or on the command, the flag lands in the one Target; a command's
    # default never undoes what the group was given.
    if ctx.get_parameter_source(str(param.name)) not in (None, ParameterSource.DEFAULT):
        setattr(ctx.ensure_object(Target), str(param.name), value)
    return value


def _complete_namespaces(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    def names() -> list[str]:
        cluster = ctx.ensure_object(Target).cluster()
        return [
            str(ns.metadata.name) for ns in cluster.core.list_namespace(_request_timeout=5).items
        ]

    return _completions(names, incomplete)


def _completions(names: Callable[[], Iterable[str]], incomplete: str) -> list[CompletionItem]:
    """Completion from the cluster, or none at all when it cannot be asked: never an error."""
    try:
        return [CompletionItem(n) for n in names() if n.startswith(incomplete)]
    except Exception:
        return []


def kube_flags(*, all_namespaces: bool = False, selector: bool = False) -> Callable[[F], F]:
    """-n/--namespace, --context, --kubeconfig (and -A, -l where a command lists)."""

    def decorate(f: F) -> F:
        options = [
            click.option(
                "-n",
                "--namespace",
                metavar="NAMESPACE",
                expose_value=False,
                callback=_store,
                shell_complete=_complete_namespaces,
                help="The namespace (default: the context's, else 'default').",
            ),
            click.option(
                "--context",
                metavar="NAME",
                expose_value=False,
                callback=_store,
                help="The kubeconfig context (default: the current one).",
            ),
            click.option(
                "--kubeconfig",
                metavar="PATH",
                expose_value=False,
                callback=_store,
                help="The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).",
            ),
        ]
        if all_namespaces:
            options.append(
                click.option(
                    "-A",
                    "--all-namespaces",
                    is_flag=True,
                    expose_value=False,
                    callback=_store,
                    help="Every namespace.",
                )
            )
        if selector:
            options.append(
                click.option(
                    "-l", "--selector", metavar="SELECTOR", help="Label selector, as kubectl's."
                )
            )
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


OUTPUTS = ("wide", "json", "yaml", "name")


def output_flag(*choices: str) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices),
        help="Output format (default: a table).",
    )


class KindType(click.ParamType[Kind]):
    """jobs|recurring|queues, or any of kubectl's names for them (bgj, rj, jq, ...)."""

    name = "kind"

    def __init__(self, words: Sequence[str] = ()) -> None:
        self.words = words

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Kind:
        if isinstance(value, Kind):
            return value
        try:
            return Kind.named(str(value))
        except KeyError:
            self.fail(f"{value!r} is not one of {', '.join(self._words())}", param, ctx)

    def _words(self) -> list[str]:
        return list(self.words) or [kind.word for kind in Kind]

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(w) for w in self._words() if w.startswith(incomplete)]


class DurationType(click.ParamType[str]):
    """A Go duration: 90s, 15m, 1h30m, 500ms."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class TimeType(click.ParamType[datetime]):
    """An RFC 3339 time with its zone: 2026-11-22T10:00:00Z."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an RFC 3339 time such as 2026-11-22T10:00:00Z", param, ctx)
        if moment.utcoffset() is None:
            self.fail(f"{value!r} has no time zone: add Z or an offset such as +01:00", param, ctx)
        return moment


def key_values(values: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = value
    return pairs


def _complete_objects(kind: Kind) -> Callable[..., list[CompletionItem]]:
    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        def names() -> list[str]:
            target = ctx.ensure_object(Target)
            cluster = target.cluster()
            items = cluster.list_objects(kind, target.namespace or cluster.namespace)
            return [str(o["metadata"]["name"]) for o in items]

        return _completions(names, incomplete)

    return complete


# ---------------------------------------------------------------- the group


@click.group(cls=StokerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@kube_flags()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Stoker: Hangfire-class background jobs for Kubernetes.

    The dashboard's actions for people and scripts: list and inspect jobs, read the logs of an
    attempt, enqueue, trigger, requeue, retry, suspend, resume and delete. Flags as kubectl's:
    -n, -A, -l, -o wide|json|yaml|name, --context, --kubeconfig.
    """
    ctx.ensure_object(Target)


def target_of(ctx: click.Context) -> Target:
    return ctx.ensure_object(Target)


def namespace_scope(target: Target) -> str | None:
    """The namespace a listing covers; None for all of them (-A)."""
    return None if target.all_namespaces else target.cluster().namespace


def nothing_found(target: Target) -> None:
    if target.all_namespaces:
        click.echo("No resources found", err=True)
    else:
        click.echo(f"No resources found in {target.cluster().namespace} namespace.", err=True)


def print_objects(kind: Kind, objects: Sequence[dict[str, Any]], output: str | None) -> None:
    if output in ("json", "yaml"):
        click.echo(tables.dump(tables.as_list(objects), output), nl=False)
    elif output == "name":
        click.echo(tables.names(kind, objects), nl=False)


def matches(obj: dict[str, Any], phases: Sequence[str], queue: str | None) -> bool:
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    if phases and status.get("phase") not in phases:
        return False
    return queue is None or (spec.get("queue") or DEFAULT_QUEUE) == queue


phase_option = click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(PHASES, case_sensitive=False),
    help="Only jobs in this phase (repeatable).",
)
queue_option = click.option("--queue", metavar="QUEUE", help="Only jobs of this queue.")


def canonical_phases(phases: Sequence[str]) -> list[str]:
    by_lower = {p.lower(): p for p in PHASES}
    return [by_lower[p.lower()] for p in phases]


# ---------------------------------------------------------------- ls, get, logs, stats


@cli.command("ls")
@click.argument("kind", type=KindType(), default="jobs", required=False)
@phase_option
@queue_option
@kube_flags(all_namespaces=True, selector=True)
@output_flag(*OUTPUTS)
@click.pass_context
def ls(
    ctx: click.Context,
    kind: Kind,
    phases: tuple[str, ...],
    queue: str | None,
    selector: str | None,
    output: str | None,
) -> None:
    """List jobs (default), recurring jobs or queues, as `kubectl get` would."""
    if kind is not Kind.JOB and (phases or queue):
        raise click.UsageError("--phase and --queue apply to jobs only")
    target = target_of(ctx)
    cluster = target.cluster()
    wanted = canonical_phases(phases)
    objects = [
        o
        for o in cluster.list_objects(kind, namespace_scope(target), selector)
        if matches(o, wanted, queue)
    ]
    if output in ("json", "yaml", "name"):
        print_objects(kind, objects, output)
        return
    if not objects:
        nothing_found(target)
        return
    click.echo(
        tables.table(
            kind,
            objects,
            now_utc(),
            wide=output == "wide",
            namespaces=target.all_namespaces,
        ),
        nl=False,
    )


@cli.command("get")
@click.argument("jobs", nargs=-1, required=True, shell_complete=_complete_objects(Kind.JOB))
@kube_flags()
@output_flag("json", "yaml")
@click.pass_context
def get(ctx: click.Context, jobs: tuple[str, ...], output: str | None) -> None:
    """Show a job: its status, attempt history and Events (as `kubectl describe`)."""
    cluster = target_of(ctx).cluster()
    found = [cluster.get(Kind.JOB, cluster.namespace, name) for name in jobs]
    if output is not None:
        value: Any = found[0] if len(found) == 1 else tables.as_list(found)
        click.echo(tables.dump(value, output), nl=False)
        return
    now = now_utc()
    texts = []
    for job in found:
        events = cluster.events(cluster.namespace, str(job["metadata"]["uid"]))
        texts.append(describe.describe_job(job, events, now))
    click.echo("\n".join(texts), nl=False)


@cli.command("logs")
@click.argument("job", shell_complete=_complete_objects(Kind.JOB))
@click.option(
    "--attempt", type=click.IntRange(min=1), help="The attempt (default: the latest one)."
)
@click.option("-f", "--follow", is_flag=True, help="Stream the log while the attempt runs.")
@click.option(
    "-c", "--container", metavar="NAME", help="The container (default: main, or the first)."
)
@click.option("--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@kube_flags()
@click.pass_context
def logs(
    ctx: click.Context,
    job: str,
    attempt: int | None,
    follow: bool,
    container: str | None,
    tail: int | None,
    timestamps: bool,
) -> None:
    """Print the log of one attempt of a job: the pod <job>-<attempt>."""
    cluster = target_of(ctx).cluster()
    namespace = cluster.namespace
    stored = cluster.get(Kind.JOB, namespace, job)
    status = stored.get("status") or {}
    number = attempt or status.get("attempt")
    if not number:
        phase = status.get("phase") or "new"
        raise CommandError(f"error: job {job} has not started an attempt yet (phase {phase})")
    pods = cluster.attempt_pods(namespace, stored, int(number))
    if not pods:
        raise CommandError(
            f"error: no pod for attempt {number} of job {job} (not created yet, or deleted)"
        )
    pod = pods[0]
    containers = [c.name for c in pod.spec.containers]
    if container is None:
        container = "main" if "main" in containers else containers[0]
        if len(containers) > 1:
            click.echo(
                f'Defaulted container "{container}" out of: {", ".join(containers)}', err=True
            )
    name = pod.metadata.name
    if follow and (pod.status is None or pod.status.phase in (None, "Pending")):
        click.echo(f"waiting for pod {name} to start ...", err=True)
        if not cluster.pod_started(namespace, name, LOG_WAIT_SECONDS):
            raise CommandError(f"error: pod {name} did not start")
    out = sys.stdout.buffer
    try:
        for chunk in cluster.log(
            namespace, name, container, follow=follow, tail=tail, timestamps=timestamps
        ):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None


@cli.command("stats")
@kube_flags(all_namespaces=True)
@output_flag("json", "yaml")
@click.pass_context
def stats_command(ctx: click.Context, output: str | None) -> None:
    """Jobs per phase and queue, and how many succeeded and failed in the last 24 h."""
    target = target_of(ctx)
    cluster = target.cluster()
    scope = namespace_scope(target)
    rows = stats.count(
        cluster.list_objects(Kind.JOB, scope), cluster.list_objects(Kind.QUEUE, scope), now_utc()
    )
    recurring = stats.recurring_summary(cluster.list_objects(Kind.RECURRING, scope))
    if output is not None:
        click.echo(tables.dump(stats.wire(rows, recurring), output), nl=False)
        return
    click.echo(stats.render(rows, recurring, namespaces=target.all_namespaces), nl=False)


# ---------------------------------------------------------------- enqueue


@cli.command("enqueue")
@click.argument("task")
@click.option("--args", "args_json", metavar="JSON", help="The task's arguments: a JSON object.")
@click.option("--queue", metavar="QUEUE", help="The JobQueue (default: default).")
@click.option(
    "--image",
    metavar="IMAGE",
    help="Run the task in this image (default: the pod template of the queue).",
)
@click.option("--delay", type=DurationType(), help="Start this long from now (90s, 15m, 2h).")
@click.option("--at", "start_at", type=TimeType(), help="Start at this RFC 3339 time.")
@click.option(
    "--after",
    multiple=True,
    metavar="JOB",
    shell_complete=_complete_objects(Kind.JOB),
    help="Start after this job (repeatable: after all of them).",
)
@click.option(
    "--condition",
    type=click.Choice(["Succeeded", "Finished"]),
    help="With --after: wait for success (default) or for any end.",
)
@click.option("--name", metavar="NAME", help="The job's name (default: <task>-<random>).")
@click.option("--priority", type=int, help="Higher runs first within the queue.")
@click.option("--retries", type=click.IntRange(min=0), help="Retries after a failed attempt.")
@click.option("--timeout", type=DurationType(), help="Deadline of each attempt.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A job label.")
@click.option(
    "--pod-annotation",
    "pod_annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="An annotation on the job's pods (needs --image).",
)
@kube_flags()
@click.pass_context
def enqueue(
    ctx: click.Context,
    task: str,
    args_json: str | None,
    queue: str | None,
    image: str | None,
    delay: str | None,
    start_at: datetime | None,
    after: tuple[str, ...],
    condition: str | None,
    name: str | None,
    priority: int | None,
    retries: int | None,
    timeout: str | None,
    labels: tuple[str, ...],
    pod_annotations: tuple[str, ...],
) -> None:
    """Create a job that runs TASK and print its name (Hangfire's Enqueue, Schedule and
    ContinueJobWith).

    Without --image the job carries no pod template: its JobQueue's template runs it."""
    if delay is not None and start_at is not None:
        raise click.UsageError("use --delay or --at, not both")
    if after and (delay is not None or start_at is not None):
        raise click.UsageError("--after starts the job when its parents finish: drop --delay/--at")
    if condition is not None and not after:
        raise click.UsageError("--condition applies to --after")
    args = parse_args(args_json)
    opts: JobOptions = {
        "name": name,
        "queue": queue,
        "priority": priority,
        "retry": retries,
        "timeout": timeout,
        "image": image,
        "labels": key_values(labels, "--label") or None,
        "pod_annotations": key_values(pod_annotations, "--pod-annotation") or None,
    }
    client: Client = target_of(ctx).cluster().client()
    if after:
        handle = client.continue_with(
            list(after),
            task,
            args,
            condition=cast(AfterCondition | None, condition),
            **opts,
        )
    elif delay is not None or start_at is not None:
        handle = client.schedule(task, args, delay=delay, at=start_at, **opts)
    else:
        handle = client.enqueue(task, args, **opts)
    click.echo(handle.name)


def parse_args(args_json: str | None) -> dict[str, Any] | None:
    if args_json is None:
        return None
    try:
        args = json.loads(args_json)
    except ValueError as exc:
        raise CommandError(f"error: --args is not JSON: {exc}") from None
    if not isinstance(args, dict):
        raise CommandError(f"error: --args must be a JSON object, got {type(args).__name__}")
    return args


# ---------------------------------------------------------------- operations on jobs


def select_jobs(
    ctx: click.Context,
    names: Sequence[str],
    phases: Sequence[str],
    queue: str | None,
    selector: str | None,
    allowed: frozenset[str] | None,
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(namespace, name, the stored job or None) of each job a bulk command acts on."""
    target = target_of(ctx)
    bulk = bool(phases or queue or selector)
    if names and bulk:
        raise click.UsageError("name jobs, or select them with --phase/--queue/-l: not both")
    if not names and not bulk:
        raise click.UsageError("name at least one job, or select with --phase, --queue or -l")
    if names and target.all_namespaces:
        raise click.UsageError("-A selects jobs: use it with --phase, --queue or -l")
    wanted = canonical_phases(phases)
    if allowed is not None and any(p not in allowed for p in wanted):
        raise click.UsageError(f"--phase must be one of {', '.join(sorted(allowed))} here")
    cluster = target.cluster()
    if names:
        return [(cluster.namespace, name, None) for name in names]
    jobs = cluster.list_objects(Kind.JOB, namespace_scope(target), selector)
    return [
        (str(o["metadata"]["namespace"]), str(o["metadata"]["name"]), o)
        for o in jobs
        if matches(o, wanted, queue) and (allowed is None or _phase(o) in allowed)
    ]


def _phase(job: dict[str, Any]) -> str | None:
    phase = (job.get("status") or {}).get("phase")
    return None if phase is None else str(phase)


def each_job(
    ctx: click.Context,
    selected: Sequence[tuple[str, str, dict[str, Any] | None]],
    act: Callable[[Client, str, dict[str, Any] | None], str],
) -> None:
    """Apply `act` to every selected job; one line per job, errors included; exit 1 if any
    failed (the others are still done, as kubectl does)."""
    target = target_of(ctx)
    if not selected:
        nothing_found(target)
        return
    cluster = target.cluster()
    failed = False
    for namespace, name, stored in selected:
        try:
            click.echo(act(cluster.client(namespace), name, stored))
        except (click.ClickException, click.exceptions.Exit):
            raise
        except CommandError as exc:
            click.echo(str(exc), err=True)
            failed = True
        except Exception as exc:
            click.echo(one_line(exc), err=True)
            failed = True
    if failed:
        raise click.exceptions.Exit(1)


def require_phase(
    client: Client, name: str, stored: dict[str, Any] | None, allowed: frozenset[str], verb: str
) -> None:
    """Refuse an operation the operator would only ignore (it records a Warning Event)."""
    job = stored if stored is not None else client.get(name)
    phase = _phase(job)
    if phase not in allowed:
        raise CommandError(
            f"error: {Kind.JOB.ref(name)} is {phase or 'new'}: "
            f"{verb} applies to {' or '.join(sorted(allowed))} jobs"
        )


REQUEUE_PHASES = FINISHED_PHASES
RETRY_NOW_PHASES = frozenset({"Scheduled"})


@cli.command("requeue")
@click.argument("jobs", nargs=-1, shell_complete=_complete_objects(Kind.JOB))
@phase_option
@queue_option
@kube_flags(all_namespaces=True, selector=True)
@click.pass_context
def requeue(
    ctx: click.Context,
    jobs: tuple[str, ...],
    phases: tuple[str, ...],
    queue: str | None,
    selector: str | None,
) -> None:
    """Run Succeeded or Failed jobs again with a fresh retry budget (Hangfire's Requeue).

    stoker requeue --phase Failed [--queue Q] requeues every failed job."""
    selected = select_jobs(ctx, jobs, phases, queue, selector, REQUEUE_PHASES)

    def act(client: Client, name: str, stored: dict[str, Any] | None) -> str:
        require_phase(client, name, stored, REQUEUE_PHASES, "requeue")
        client.requeue(name)
        return f"{Kind.JOB.ref(name)} requeued"

    each_job(ctx, selected, act)


@cli.command("retry-now")
@click.argument("jobs", nargs=-1, shell_complete=_complete_objects(Kind.JOB))
@phase_option
@queue_option
@kube_flags(all_namespaces=True, selector=True)
@click.pass_context
def retry_now(
    ctx: click.Context,
    jobs: tuple[str, ...],
    phases: tuple[str, ...],
    queue: str | None,
    selector: str | None,
) -> None:
    """Start Scheduled jobs now, skipping the rest of their delay."""
    selected = select_jobs(ctx, jobs, phases, queue, selector, RETRY_NOW_PHASES)

    def act(client: Client, name: str, stored: dict[str, Any] | None) -> str:
        require_phase(client, name, stored, RETRY_NOW_PHASES, "retry-now")
        client.retry_now(name)
        return f"{Kind.JOB.ref(name)} retrying now"

    each_job(ctx, selected, act)


@cli.command("delete")
@click.argument("jobs", nargs=-1, shell_complete=_complete_objects(Kind.JOB))
@phase_option
@queue_option
@kube_flags(all_namespaces=True, selector=True)
@click.pass_context
def delete(
    ctx: click.Context,
    jobs: tuple[str, ...],
    phases: tuple[str, ...],
    queue: str | None,
    selector: str | None,
) -> None:
    """Delete jobs; a running attempt's pod is deleted with it (SIGTERM, then its grace period)."""
    selected = select_jobs(ctx, jobs, phases, queue, selector, None)

    def act(client: Client, name: str, stored: dict[str, Any] | None) -> str:
        if not client.delete(name):
            raise CommandError(not_found(Kind.JOB, name))
        return f"{Kind.JOB.ref(name)} deleted"

    each_job(ctx, selected, act)


@cli.command("trigger")
@click.argument(
    "recurring_jobs", nargs=-1, required=True, shell_complete=_complete_objects(Kind.RECURRING)
)
@kube_flags()
@click.pass_context
def trigger(ctx: click.Context, recurring_jobs: tuple[str, ...]) -> None:
    """Run recurring jobs now, leaving their schedules alone (Hangfire's Trigger)."""
    cluster = target_of(ctx).cluster()
    selected = [(cluster.namespace, name, None) for name in recurring_jobs]

    def act(client: Client, name: str, stored: dict[str, Any] | None) -> str:
        client.trigger(name)
        return f"{Kind.RECURRING.ref(name)} triggered"

    each_job(ctx, selected, act)


# ---------------------------------------------------------------- suspend, resume


def set_suspend(ctx: click.Context, kind: Kind, names: Sequence[str], suspend: bool) -> None:
    cluster = target_of(ctx).cluster()
    namespace = cluster.namespace
    word = "suspended" if suspend else "resumed"
    selected = [(namespace, name, None) for name in names]

    def act(client: Client, name: str, stored: dict[str, Any] | None) -> str:
        try:
            cluster.patch(kind, namespace, name, {"spec": {"suspend": suspend}})
        except Exception as exc:
            # The default queue exists without an object; suspending it makes one.
            if not (kind is Kind.QUEUE and name == DEFAULT_QUEUE and _status(exc) == 404):
                raise
            if suspend:
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": kind.kind,
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"suspend": True},
                }
                cluster.create(kind, namespace, body)
                return f"{kind.ref(name)} created, suspended"
        return f"{kind.ref(name)} {word}"

    each_job(ctx, selected, act)


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


SUSPENDABLE = KindType(("job", "recurring", "queue"))


@cli.command("suspend")
@click.argument("kind", type=SUSPENDABLE)
@click.argument("names", nargs=-1, required=True)
@kube_flags()
@click.pass_context
def suspend(ctx: click.Context, kind: Kind, names: tuple[str, ...]) -> None:
    """Pause jobs, recurring jobs or queues (spec.suspend: true): nothing new starts."""
    set_suspend(ctx, kind, names, True)


@cli.command("resume")
@click.argument("kind", type=SUSPENDABLE)
@click.argument("names", nargs=-1, required=True)
@kube_flags()
@click.pass_context
def resume(ctx: click.Context, kind: Kind, names: tuple[str, ...]) -> None:
    """Undo suspend (spec.suspend: false)."""
    set_suspend(ctx, kind, names, False)


# ---------------------------------------------------------------- operator, crds


@cli.command("operator")
@click.option("--log-level", default="info", help="debug, info, warning or error.")
def operator(log_level: str) -> None:
    """Run the operator (settings from STOKER_* variables)."""
    import stoker.main  # registers the handlers

    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Kopf logs every handler call at INFO: one line per watch event is noise at our volume.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.root.level))
    stoker.main.run_operator()


@cli.command("crds")
def crds() -> None:
    """Print the CustomResourceDefinitions."""
    from stoker.api.crds import rendered

    sys.stdout.write("---\n".join(rendered().values()))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console scripts `stoker` and `kubectl-stoker`."""
    cli.main(args=list(argv) if argv is not None else None)
    raise SystemExit(0)  # cli.main exits by itself; this keeps the type checker informed
