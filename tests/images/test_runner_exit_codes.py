"""Each way a run can end, with its exit code and termination message."""

from __future__ import annotations

import json

import pytest
from runner_harness import Runner

NOT_AN_OBJECT = "BadArguments: STOKER_ARGS must be a JSON object of keyword arguments, got "
NESTED_ARGS = {
    "order": {"id": 42, "lines": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B", "qty": 1}]},
    "tags": ["new", "vip", None, True, False],
    "note": 'naïve café ☕ "quoted" \n newline',
    "deep": {"a": {"b": {"c": {"d": [[], {}, [1, [2, [3]]]]}}}},
    "big": 12345678901234567890,
    "empty": {},
}


@pytest.mark.parametrize(
    ("task", "args", "code", "message"),
    [
        # Success: exit 0 and no termination message.
        ("echo", '{"a": 1}', 0, None),
        ("billing.charge", '{"amount": 5}', 0, None),
        ("kw:named-task", None, 0, None),
        ("async_echo", '{"value": 1}', 0, None),
        ("exit_with", '{"code": 0}', 0, None),
        # The task raised: exit 1.
        ("boom", '{"message": "kaput"}', 1, "ValueError: kaput"),
        ("async_boom", '{"message": "async kaput"}', 1, "RuntimeError: async kaput"),
        # The task chose its exit code.
        ("fail_with", '{"message": "try later"}', 75, "stoker_runner.Fail: try later"),
        ("fail_with", '{"message": "give up", "exit_code": 3}', 3, "stoker_runner.Fail: give up"),
        ("exit_with", '{"code": 4}', 4, "SystemExit: 4"),
        ("exit_with", '{"code": "bye"}', 1, "SystemExit: bye"),
        # Configuration errors: exit 2.
        (None, None, 2, "MissingTask: STOKER_TASK is not set"),
        ("   ", None, 2, "MissingTask: STOKER_TASK is not set"),
        ("nope", None, 2, "UnknownTask: unknown task 'nope'; known tasks: async_boom, "),
        ("echo", "{not json", 2, "BadArguments: STOKER_ARGS is not valid JSON"),
        ("echo", "[1, 2]", 2, NOT_AN_OBJECT + "an array"),
        ("echo", '"text"', 2, NOT_AN_OBJECT + "a string"),
        ("echo", "7", 2, NOT_AN_OBJECT + "a number"),
        ("echo", "true", 2, NOT_AN_OBJECT + "a boolean"),
        ("echo", "null", 2, NOT_AN_OBJECT + "null"),
        ("boom", "{}", 2, "BadArguments: task 'boom': missing a required argument: 'message'"),
        (
            "boom",
            '{"message": "m", "extra": 1}',
            2,
            "BadArguments: task 'boom': got an unexpected keyword argument 'extra'",
        ),
        (
            "wait_with_cancel_parameter",
            '{"cancel": true}',
            2,
            "BadArguments: task 'wait_with_cancel_parameter': argument 'cancel' is supplied by the "
            "runner",
        ),
    ],
)
def test_exit_code_and_termination_message(
    runner: Runner, task: str | None, args: str | None, code: int, message: str | None
) -> None:
    result = runner.run(task, args)

    assert result.code == code, result.stderr
    if message is None:
        assert result.termination is None
    else:
        assert result.termination is not None
        assert result.termination.decode().startswith(message)


def test_unknown_task_lists_every_known_name(runner: Runner) -> None:
    result = runner.run("nope")

    assert result.termination is not None
    known = result.termination.decode().split("known tasks: ")[1].split(", ")
    assert known == sorted(known)
    assert {"echo", "billing.charge", "kw:named-task", "async_wait"} <= set(known)


@pytest.mark.parametrize("task", ["boom", "async_boom", "fail_with"])
def test_task_exception_prints_a_traceback(runner: Runner, task: str) -> None:
    result = runner.run(task, '{"message": "with traceback"}')

    assert "Traceback (most recent call last)" in result.stderr
    assert f"in {task}\n" in result.stderr  # the task's own frame is shown


@pytest.mark.parametrize("task", ["echo", "async_echo"])
def test_nested_json_args_arrive_intact(runner: Runner, task: str) -> None:
    args = NESTED_ARGS if task == "echo" else {"value": NESTED_ARGS}

    result = runner.run(task, json.dumps(args))

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == NESTED_ARGS


@pytest.mark.parametrize("args", [None, "", "  \n"])
def test_no_args_means_no_keyword_arguments(runner: Runner, args: str | None) -> None:
    result = runner.run("echo", args)

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {}


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (
            "no_such_module_here",
            "TaskModuleError: cannot import task module 'no_such_module_here': ModuleNotFoundError",
        ),
        (
            "runner_test_tasks,broken_tasks",
            "TaskModuleError: cannot import task module "
            "'broken_tasks': ModuleNotFoundError: No module named 'no_such_dependency_anywhere'",
        ),
        (
            "runner_test_tasks,clashing_tasks",
            "TaskModuleError: cannot import task module "
            "'clashing_tasks': ValueError: task name 'echo' is registered twice",
        ),
    ],
)
def test_task_module_errors_are_configuration_errors(
    runner: Runner, modules: str, message: str
) -> None:
    result = runner.run("echo", STOKER_TASK_MODULES=modules)

    assert result.code == 2, result.stderr
    assert result.termination is not None
    assert result.termination.decode().startswith(message)


def test_task_modules_list_takes_several_modules_and_blanks(runner: Runner) -> None:
    (runner.tasks_dir / "second_tasks.py").write_text(
        "from stoker_runner import task\n\n@task\ndef second():\n    print('second ran')\n"
    )

    result = runner.run("second", STOKER_TASK_MODULES=" runner_test_tasks , ,second_tasks ")

    assert result.code == 0, result.stderr
    assert result.stdout == "second ran\n"


def test_current_context_comes_from_the_environment(runner: Runner) -> None:
    result = runner.run("whoami", STOKER_JOB_NAME="welcome-9", STOKER_ATTEMPT="3")

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"task": "whoami", "job": "welcome-9", "attempt": 3}


def test_current_context_outside_stoker_is_empty(runner: Runner) -> None:
    result = runner.run("whoami")

    assert json.loads(result.stdout) == {"task": "whoami", "job": None, "attempt": None}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STOKER_ATTEMPT", "two", "BadEnvironment: STOKER_ATTEMPT must be a positive integer"),
        ("STOKER_ATTEMPT", "0", "BadEnvironment: STOKER_ATTEMPT must be a positive integer"),
        ("STOKER_CANCEL_GRACE_SECONDS", "soon", "BadEnvironment: STOKER_CANCEL_GRACE_SECONDS"),
        ("STOKER_CANCEL_GRACE_SECONDS", "-1", "BadEnvironment: STOKER_CANCEL_GRACE_SECONDS"),
        ("STOKER_CANCEL_GRACE_SECONDS", "inf", "BadEnvironment: STOKER_CANCEL_GRACE_SECONDS"),
    ],
)
def test_bad_environment_is_a_configuration_error(
    runner: Runner, variable: str, value: str, message: str
) -> None:
    result = runner.run("echo", **{variable: value})

    assert result.code == 2, result.stderr
    assert result.termination is not None
    assert result.termination.decode().startswith(message)
    assert result.stdout == ""  # the task never ran
