"""Example tasks, the runner's default STOKER_TASK_MODULES: importing the package registers
every task in its modules. The ones that use PostgreSQL and SMTP (accounts, mail, invoices,
orders, payments, imports) find them through examples.connections."""

from examples import (
    accounts,
    billing,
    imports,
    invoices,
    mail,
    notifications,
    orders,
    payments,
    reports,
    resilience,
)

__all__ = [
    "accounts",
    "billing",
    "imports",
    "invoices",
    "mail",
    "notifications",
    "orders",
    "payments",
    "reports",
    "resilience",
]
