"""The @task decorator and Fail, in-process."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stoker_runner import Fail
from stoker_runner.arguments import bind
from stoker_runner.config_errors import BadArguments, UnknownTask
from stoker_runner.registry import NAME_PATTERN, Registry


def first(x: int) -> int:
    return x


def second(x: int) -> int:
    return x


def test_decorator_forms_register_under_the_right_names() -> None:
    registry = Registry()

    @registry.task
    def bare() -> None: ...

    @registry.task()
    def called() -> None: ...

    @registry.task("billing.invoice")
    def positional() -> None: ...

    @registry.task(name="billing:ledger-post")
    def keyword() -> None: ...

    assert registry.names() == ["bare", "billing.invoice", "billing:ledger-post", "called"]
    assert registry.get("billing.invoice").function is positional
    assert bare is registry.get("bare").function  # the function comes back unchanged


@pytest.mark.parametrize("name", ["", "1starts-with-digit", "has space", "slash/y", "a" * 254])
def test_names_the_crd_would_refuse_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not valid"):
        Registry().register(name, first)


@given(st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda name: len(name) <= 253))
def test_every_name_the_crd_accepts_can_be_registered(name: str) -> None:
    assert Registry().register(name, first).name == name


def test_a_name_registered_twice_by_different_functions_is_refused() -> None:
    registry = Registry()
    registry.register("same", first)

    with pytest.raises(ValueError, match="registered twice"):
        registry.register("same", second)


def test_registering_the_same_function_again_is_harmless() -> None:
    registry = Registry()

    assert registry.register("same", first) is registry.register("same", first)


def test_unknown_task_names_the_known_ones() -> None:
    registry = Registry()
    registry.register("b", first)
    registry.register("a", second)

    with pytest.raises(UnknownTask, match=r"unknown task 'c'; known tasks: a, b$"):
        registry.get("c")


def test_unknown_task_with_nothing_registered_points_at_the_modules() -> None:
    with pytest.raises(UnknownTask, match="none \\(check STOKER_TASK_MODULES\\)"):
        Registry().get("c")


def with_cancel(cancel: threading.Event, n: int) -> None: ...


def with_keyword_only_cancel(n: int, *, cancel: threading.Event) -> None: ...


def with_var_keywords(**kwargs: Any) -> None: ...


@pytest.mark.parametrize(
    ("function", "args", "receives_cancel"),
    [
        (with_cancel, {"n": 1}, True),
        (with_keyword_only_cancel, {"n": 1}, True),
        (with_var_keywords, {"n": 1}, False),  # only a declared `cancel` gets the event
        (first, {"x": 1}, False),
    ],
)
def test_the_cancel_event_goes_to_tasks_that_declare_it(
    function: Any, args: dict[str, Any], receives_cancel: bool
) -> None:
    event = threading.Event()
    registered = Registry().register("t", function)

    kwargs = bind(registered, args, event)

    assert ("cancel" in kwargs and kwargs["cancel"] is event) == receives_cancel
    assert {key: value for key, value in kwargs.items() if key != "cancel"} == args


def test_positional_only_parameters_cannot_come_from_args() -> None:
    def positional_only(x: int, /) -> None: ...

    registered = Registry().register("t", positional_only)

    with pytest.raises(BadArguments, match="positional"):
        bind(registered, {"x": 1}, threading.Event())


def test_fail_defaults_to_exit_code_75() -> None:
    assert Fail("later").exit_code == 75


@pytest.mark.parametrize("code", [0, -1, 256])
def test_fail_refuses_exit_codes_a_process_cannot_have(code: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 255"):
        Fail("x", exit_code=code)
