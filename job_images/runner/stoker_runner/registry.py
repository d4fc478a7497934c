"""Which function a task name calls: the @task decorator and the table it fills."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from stoker_runner.config_errors import UnknownTask

F = TypeVar("F", bound=Callable[..., Any])

# The pattern and length the BackgroundJob CRD accepts for spec.task.name: a task registered
# under any other name could never be called.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
NAME_MAX_LENGTH = 253

# A parameter with this name receives the cancellation Event instead of a value from args.
CANCEL_PARAMETER = "cancel"


@dataclass(frozen=True)
class Task:
    name: str
    function: Callable[..., Any]
    signature: inspect.Signature

    @property
    def wants_cancel(self) -> bool:
        parameter = self.signature.parameters.get(CANCEL_PARAMETER)
        return parameter is not None and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )


class Registry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, name: str, function: Callable[..., Any]) -> Task:
        if len(name) > NAME_MAX_LENGTH or not NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"task name {name!r} is not valid: it must match {NAME_PATTERN.pattern} "
                f"and have at most {NAME_MAX_LENGTH} characters"
            )
        existing = self._tasks.get(name)
        if existing is not None:
            if existing.function is function:
                return existing
            raise ValueError(
                f"task name {name!r} is registered twice: by {_describe(existing.function)} "
                f"and by {_describe(function)}"
            )
        registered = Task(name, function, inspect.signature(function))
        self._tasks[name] = registered
        return registered

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(self.names()) or "none (check STOKER_TASK_MODULES)"
            raise UnknownTask(f"unknown task {name!r}; known tasks: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    @overload
    def task(self, name: F) -> F: ...

    @overload
    def task(self, name: str | None = None) -> Callable[[F], F]: ...

    def task(self, name: F | str | None = None) -> F | Callable[[F], F]:
        """Register a function as a task, under its own name or the one given.

        Usable bare (`@task`), called (`@task()`) or with a name (`@task("billing.invoice")`,
        `@task(name="billing.invoice")`).
        The function is returned unchanged, so it stays directly callable.
        """
        if callable(name):
            self.register(name.__name__, name)
            return name
        explicit = name

        def decorate(function: F) -> F:
            self.register(function.__name__ if explicit is None else explicit, function)
            return function

        return decorate


def _describe(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", "?")
    qualname = getattr(function, "__qualname__", repr(function))
    return f"{module}.{qualname}"


registry = Registry()
task = registry.task
