"""What a job runs with: its own spec, completed by its queue's template and defaults.

Hangfire's workers carry the code; a JobQueue may carry the pod template and the retry policy
and timeout its jobs leave unset. The result is computed at each decision and never written
back into the job, so GitOps sees no drift and a changed queue applies to later attempts.
"""

from __future__ import annotations

from typing import Any

from stoker.api.models import BackgroundJobSpec, JobQueueSpec


def effective_spec(job: BackgroundJobSpec, queue: JobQueueSpec | None) -> BackgroundJobSpec:
    if queue is None:
        return job
    update: dict[str, Any] = {}
    if job.template is None and queue.template is not None:
        update["template"] = queue.template
    # A job's own retry block wins as a whole, even one that only sets `attempts`.
    if "retry" not in job.model_fields_set and queue.defaults.retry is not None:
        update["retry"] = queue.defaults.retry
    if job.timeout is None and queue.defaults.timeout is not None:
        update["timeout"] = queue.defaults.timeout
    return job.model_copy(update=update) if update else job
