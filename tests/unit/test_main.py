"""How the operator sets kopf up: what it watches, paged lists, timeouts, storages."""

from __future__ import annotations

from datetime import timedelta

import kopf
import pytest
from kopf._cogs.structs import references

from stoker.main import configure
from stoker.settings import Settings

PODS = references.Resource(
    group="", version="v1", plural="pods", kind="Pod", singular="pod", namespaced=True
)
JOBS = references.Resource(
    group="stoker.dev", version="v1alpha1", plural="backgroundjobs", kind="BackgroundJob",
    singular="backgroundjob", namespaced=True,
)  # fmt: skip


def configured(**settings: object) -> kopf.OperatorSettings:
    result = kopf.OperatorSettings()
    configure(result, Settings(**settings))  # type: ignore[arg-type]
    return result


def test_kopf_lists_in_pages_and_leaves_jobs_and_pods_to_the_informers() -> None:
    settings = configured()
    assert settings.watching.chunk_size == 500
    import stoker.main  # noqa: F401  (registers the handlers)

    selectors = kopf.get_default_registry()._watching.get_all_selectors()
    watched = {selector.plural or selector.any_name for selector in selectors}
    assert watched == {"recurringjobs", "jobqueues"}
    assert PODS.plural not in watched and JOBS.plural not in watched


def test_no_request_of_kopfs_can_hang() -> None:
    settings = configured(request_timeout=timedelta(seconds=7))
    assert settings.networking.request_timeout == 7
    assert settings.networking.connect_timeout == 7
    assert settings.watching.connect_timeout == 7
    assert settings.watching.server_timeout is not None
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout


def test_kopf_writes_nothing_outside_status() -> None:
    settings = configured()
    assert isinstance(settings.persistence.progress_storage, kopf.StatusProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.StatusDiffBaseStorage)
    assert settings.peering.standalone


class _Loop:
    def __init__(self, stalled: bool) -> None:
        self._stalled = stalled

    def stalled(self) -> bool:
        return self._stalled


class _Task:
    def __init__(self, done: bool) -> None:
        self._done = done

    def done(self) -> bool:
        return self._done


def memo(*, done: bool = False, stalled: bool = False, leading: bool = True) -> kopf.Memo:
    from stoker.kube.leader import Fence

    fence = Fence(renew_deadline=10.0)
    if leading:
        fence.renewed(fence.clock())
    return kopf.Memo(task=_Task(done), loop=_Loop(stalled), fence=fence)


async def test_the_probe_fails_when_the_loop_is_wedged_or_gone_and_not_on_a_standby() -> None:
    from stoker.main import reconcile_loop

    assert await reconcile_loop(memo=memo()) == "leading"
    assert await reconcile_loop(memo=memo(leading=False, stalled=True)) == "standby"
    for broken in (memo(stalled=True), memo(done=True)):
        with pytest.raises(kopf.PermanentError):
            await reconcile_loop(memo=broken)


async def test_a_leader_that_kopf_does_not_let_watch_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kopf started while the API server was down may never watch the CRDs: exit, so that a
    fresh process (the kubelet restarts it) discovers them."""
    import stoker.main as entry

    exits: list[int] = []
    monkeypatch.setattr(entry.os, "_exit", exits.append)
    await entry._watching({"backgroundjobs", "pods"}, grace=0.01)
    assert exits == [1]
    exits.clear()
    await entry._watching(set(entry.WATCHED), grace=0.01)
    assert exits == []


async def test_the_loop_trims_its_copy_of_a_kopf_event_never_kopfs_body() -> None:
    from types import SimpleNamespace

    from stoker.main import _feed
    from stoker.state import Kind, Store

    store = Store()
    memo = kopf.Memo(loop=SimpleNamespace(on_object=lambda kind, _, body: store.put(kind, body)))
    meta = {"name": "q", "namespace": "ns", "uid": "u", "resourceVersion": "1"}
    event = {"type": "ADDED", "object": {"metadata": {**meta, "managedFields": [{}]}}}
    await _feed(Kind.QUEUE)(event=event, memo=memo)
    assert "managedFields" in event["object"]["metadata"]
    assert "managedFields" not in store.objects[Kind.QUEUE]["ns", "q"]["metadata"]
