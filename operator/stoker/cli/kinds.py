"""The three Stoker resources as the command line names them (kubectl's names and short names)."""

from __future__ import annotations

from enum import Enum

from stoker.api.models import GROUP


class Kind(Enum):
    JOB = ("backgroundjobs", "BackgroundJob", ("jobs", "job", "bgj", "backgroundjob"))
    RECURRING = ("recurringjobs", "RecurringJob", ("recurring", "rj", "recurringjob"))
    QUEUE = ("jobqueues", "JobQueue", ("queues", "queue", "jq", "jobqueue"))

    def __init__(self, plural: str, kind: str, aliases: tuple[str, ...]) -> None:
        self.plural = plural
        self.kind = kind
        self.aliases = aliases

    @property
    def word(self) -> str:
        """The name a user types and completion offers: jobs, recurring, queues."""
        return self.aliases[0]

    def ref(self, name: str) -> str:
        """kubectl's name for one object: backgroundjob.stoker.dev/NAME."""
        return f"{self.kind.lower()}.{GROUP}/{name}"

    def resource(self) -> str:
        """kubectl's name of the resource in errors: backgroundjobs.stoker.dev."""
        return f"{self.plural}.{GROUP}"

    @classmethod
    def named(cls, word: str) -> Kind:
        for kind in cls:
            if word.lower() in (*kind.aliases, kind.plural):
                return kind
        raise KeyError(word)
