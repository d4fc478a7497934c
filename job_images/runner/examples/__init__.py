"""Example tasks, the runner's default STOKER_TASK_MODULES: importing the package registers
every task in its modules."""

from examples import billing, notifications, reports, resilience

__all__ = ["billing", "notifications", "reports", "resilience"]
