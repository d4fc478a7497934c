"""Configuration errors: the runner cannot call the task at all, so it exits 2."""

from __future__ import annotations


class ConfigurationError(Exception):
    """A problem with the environment, the task modules or the arguments, not with the task."""


class MissingTask(ConfigurationError):
    """STOKER_TASK is unset or blank."""


class UnknownTask(ConfigurationError):
    """No registered task has the requested name."""


class BadArguments(ConfigurationError):
    """STOKER_ARGS is not a JSON object, or does not match the task's parameters."""


class BadEnvironment(ConfigurationError):
    """A STOKER_* variable other than the task name or arguments has an unusable value."""


class TaskModuleError(ConfigurationError):
    """A module listed in STOKER_TASK_MODULES failed to import or registered a clashing task."""
