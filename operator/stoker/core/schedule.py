"""When a RecurringJob fires, which missed runs it makes up, and what its jobs are called.

Pure decisions: no I/O, no clock reads (``now`` is always a parameter), no kopf.

Schedules are 5-field cron expressions or one of the macros @yearly, @annually, @monthly,
@weekly, @daily, @midnight and @hourly, read in an IANA time zone. croniter's extensions
``L``, ``W``, ``#`` and ``?`` are accepted; its hashed (``H``) and random (``R``) values are
not, because they would make a slot depend on something other than the manifest.

Daylight saving time (the rules of Vixie cron and of Hangfire's Cronos):

- A wall-clock time skipped by a forward jump (02:30 in Europe/Berlin on the last Sunday of
  March) fires once, at the first instant after the gap (03:00 local). Several skipped
  times collapse into that one run, and into the run of the first valid time if that is a
  slot too, so a day never loses its run and no slot is returned twice.
- A wall-clock time that occurs twice on a backward jump (01:30 in America/New_York on the
  first Sunday of November) fires once, in the first pass, when the hour field names
  particular hours (``30 1 * * *``, ``0 1,13 * * *``, ``0 1-3 * * *``).
- When the hour field is a wildcard or a step (``*/15 * * * *``, ``0 */2 * * *``) the
  schedule is periodic in real time and fires at every real instant whose wall-clock time
  matches, so in the repeated hour it fires in both passes.

croniter alone does not follow these rules: given an aware start it fires ``30 1 * * *``
in both passes of the repeated hour. So croniter only enumerates wall-clock times (naive
datetimes), and this module maps each one to real instants with zoneinfo.

Assumption shared by the DST handling: a zone's offset changes at most once in any three
hours, and by at most three hours (true of every tzdb zone since 1970).

Missed runs. A slot is *due* when it lies in ``(last, now]``, ``last`` being the last slot
already handled (or the RecurringJob's creation time). A due slot older than
``startingDeadline`` never runs, under any policy. Of the rest:

- ``RunOnce`` (Hangfire Relaxed) runs the most recent one;
- ``RunAll`` (Hangfire Strict) runs all of them, oldest first, but at most ``cap`` (the most
  recent ones, so a long outage cannot queue an endless backlog) and reports the cap;
- ``Skip`` (Hangfire Ignorable) runs the most recent one only if it is on time: within
  ``startingDeadline`` when that is set, otherwise within ON_TIME_GRACE or half the time to
  the following slot, whichever is shorter. The grace absorbs the operator's own reaction
  time (a wake-up, a leader change) so that being slightly late is not a misfire; the
  half-period cap keeps it from swallowing every outage of a frequent schedule (with a
  60 s grace an every-minute schedule would always run its latest slot, like RunOnce).
  Everything else is missed.

Every due slot that does not run is counted as missed, exactly, without enumerating them.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from stoker.api.models import CRON_MACROS, JOB_NAME_MAX, RECURRING_NAME_MAX

MisfirePolicy = Literal["RunOnce", "RunAll", "Skip"]
ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]

# How late a slot may be handled and still count as on time under Skip (without a deadline),
# at most: half the time to the following slot is the other bound.
ON_TIME_GRACE = timedelta(seconds=60)
# RunAll catches up at most this many missed runs (API.md).
MAX_CATCH_UP = 100

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L or nW"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, d#n or Ld"),
)
_HASHED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE)
# Any fixed point will do: it only proves that a schedule fires at all.
_PROBE_START = datetime(2000, 1, 1)
# Bounds of the DST assumption in the module docstring.
_MAX_SHIFT = timedelta(hours=3)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_TICK = timedelta(microseconds=1)
_DAY_MINUTES = 24 * 60


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message is meant for a person."""


def parse(schedule: str, time_zone: str = "UTC") -> Schedule:
    """Check a RecurringJob's schedule and time zone; raise ScheduleError saying what is wrong."""
    text = schedule.strip()
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise ScheduleError(f"unknown macro {text!r}: use one of {', '.join(CRON_MACROS)}")
        text = _MACROS[text.lower()]
    fields = re.findall(r"\S+", text, re.ASCII)
    if len(fields) != len(_FIELDS):
        extra = " (seconds and years are not supported)" if len(fields) in (6, 7) else ""
        raise ScheduleError(
            f"schedule {schedule!r} has {len(fields)} fields{extra}: expected 5 "
            f"(minute hour day-of-month month day-of-week) or one of {', '.join(CRON_MACROS)}"
        )
    for index, (name, allowed) in enumerate(_FIELDS):
        if _HASHED.match(fields[index]):
            raise ScheduleError(f"{name} field {fields[index]!r}: H and R values are not supported")
        probe = ["*"] * len(_FIELDS)
        probe[index] = fields[index]
        try:
            croniter(" ".join(probe), _PROBE_START)
        except ValueError:
            raise ScheduleError(
                f"{name} field {fields[index]!r} is not valid: use {allowed}, '*', "
                "ranges (1-5), lists (1,5) or steps (*/15)"
            ) from None
    expression = " ".join(fields)
    try:
        croniter(expression, _PROBE_START).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(f"schedule {schedule!r} never fires") from None
    except ValueError as error:
        raise ScheduleError(f"schedule {schedule!r} is not valid: {error}") from None
    return Schedule(expression, _zone(time_zone))


def _zone(key: str) -> ZoneInfo:
    # "localtime" is the operator host's zone, not an IANA name a manifest can rely on.
    if key != "localtime":
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ScheduleError(f"unknown time zone {key!r}: use an IANA name such as Europe/Berlin or UTC")


class Schedule:
    """A parsed schedule in its time zone. Every datetime in or out is aware; out is UTC."""

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        self.expression = expression
        self.zone = zone
        _, hour, *day = expression.split()
        self.fires_in_both_passes = "*" in hour or "/" in hour
        expanded = croniter(expression, _PROBE_START).expanded
        minutes = range(60) if expanded[0] == ["*"] else expanded[0]
        hours = range(24) if expanded[1] == ["*"] else expanded[1]
        self._day_minutes = sorted(h * 60 + m for h in hours for m in minutes)
        # Fires once a day, at the day's first slot, on exactly the days the schedule fires.
        first_hour, first_minute = divmod(self._day_minutes[0], 60)
        self._days_expression = " ".join([str(first_minute), str(first_hour), *day])

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, {self.zone.key!r})"

    def next_fire(self, after: datetime) -> datetime:
        """The first slot strictly after ``after``."""
        after = _utc(after)
        # Walls earlier than this cannot map after `after`: only a backward jump in the next
        # few hours makes the clock read earlier than it does now.
        lowest = after + min(self._offset(after), self._offset(after + _MAX_SHIFT))
        walls = croniter(self.expression, _naive(lowest) - _MINUTE)
        best: datetime | None = None
        while True:
            instants = self._instants(walls.get_next(datetime))
            # Later walls never map before this wall's first instant.
            if best is not None and instants[0] >= best:
                return best
            for slot in instants:
                if slot > after and (best is None or slot < best):
                    best = slot

    def previous_fire(self, at_or_before: datetime) -> datetime:
        """The last slot at or before ``at_or_before``."""
        return next(self.slots_back_from(at_or_before))

    def slots_back_from(self, at_or_before: datetime) -> Iterator[datetime]:
        """Every slot at or before ``at_or_before``, newest first."""
        before = _utc(at_or_before)
        highest = before + max(self._offset(before), self._offset(before - _MAX_SHIFT))
        walls = croniter(self.expression, _naive(highest) + _MINUTE)
        pending: list[timedelta] = []  # _EPOCH - slot: a min-heap of it pops the latest slot
        previous = before + _TICK
        while True:
            instants = self._instants(walls.get_prev(datetime))
            # Earlier walls never map after this wall's last instant.
            while pending and _EPOCH - pending[0] >= instants[-1]:
                slot = _EPOCH - heapq.heappop(pending)
                if slot < previous:
                    previous = slot
                    yield slot
            for slot in instants:
                heapq.heappush(pending, _EPOCH - slot)

    def count(self, after: datetime, until: datetime) -> int:
        """How many slots lie in ``(after, until]``, without enumerating them."""
        after, until = _utc(after), _utc(until)
        if until <= after:
            return 0
        total, start, offset = 0, after, self._offset(after)
        for moment, old, new in self._transitions(after - _MAX_SHIFT, until):
            if moment > after:
                # Instants and wall-clock times correspond one to one between transitions.
                total += self._count_walls(start + offset, moment - _TICK + old)
                start, offset = moment - _TICK, new
                skipped = self._count_walls(moment + old - _TICK, moment + new - _TICK)
                if skipped and not self._is_slot(_naive(moment + new)):
                    # Skipped slots run once, at the end of the gap, unless a slot is there.
                    total += 1
            if new < old and not self.fires_in_both_passes:
                # The second pass of the repeated hour: real instants, but not slots.
                first = max(moment - _TICK, after)
                last = min(moment + (old - new) - _TICK, until)
                total -= self._count_walls(first + new, last + new)
        return total + self._count_walls(start + offset, until + offset)

    # ---------------------------------------------------------------- wall clock to real time

    def _instants(self, wall: datetime) -> tuple[datetime, ...]:
        """The real instants (ascending) at which the slot at wall-clock time ``wall`` fires."""
        first = wall.replace(tzinfo=self.zone)
        second = wall.replace(tzinfo=self.zone, fold=1)
        early, late = _offset_of(first), _offset_of(second)
        if early == late:
            return (first.astimezone(UTC),)
        if early > late:
            if self.fires_in_both_passes:
                return first.astimezone(UTC), second.astimezone(UTC)
            return (first.astimezone(UTC),)
        # zoneinfo reads a skipped time with the offsets from before (fold=0) and after the
        # jump, which bracket the jump.
        return (self._jump(_aware(wall - late), _aware(wall - early)),)

    # ---------------------------------------------------------------- counting

    def _count_walls(self, low: datetime, high: datetime) -> int:
        """Slots by wall-clock time in ``(low, high]`` (both given as UTC-tagged wall times)."""
        low, high = _naive(low), _naive(high)
        if high <= low:
            return 0
        days = croniter(self._days_expression, datetime.combine(low.date(), time()) - _MINUTE)
        total = 0
        while True:
            day = datetime.combine(days.get_next(datetime).date(), time())
            if day > high:
                return total
            total += bisect_right(self._day_minutes, (high - day) // _MINUTE) - bisect_right(
                self._day_minutes, (low - day) // _MINUTE
            )

    def _is_slot(self, wall: datetime) -> bool:
        found: datetime = croniter(self.expression, wall - _MINUTE).get_next(datetime)
        return found == wall

    # ---------------------------------------------------------------- the zone's offsets

    def _offset(self, instant: datetime) -> timedelta:
        return _offset_of(instant.astimezone(self.zone))

    def _transitions(
        self, start: datetime, end: datetime
    ) -> Iterator[tuple[datetime, timedelta, timedelta]]:
        """Offset changes in ``(start, end]``: (moment, offset before, offset from then on)."""
        probe = start.replace(microsecond=0)
        offset = self._offset(probe)
        while probe < end:
            following = min(probe + _MAX_SHIFT, end)
            changed = self._offset(following)
            if changed != offset:
                moment = self._jump(probe, following)
                if moment > start:
                    yield moment, offset, changed
            probe, offset = following, changed

    def _jump(self, low: datetime, high: datetime) -> datetime:
        """The instant in ``(low, high]`` at which the offset stops being that of ``low``."""
        offset = self._offset(low)
        below, above = 0, int((high - low).total_seconds())
        # Offsets change on whole seconds.
        while above - below > 1:
            middle = (below + above) // 2
            if self._offset(low + timedelta(seconds=middle)) == offset:
                below = middle
            else:
                above = middle
        return low + timedelta(seconds=above)


def _utc(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone")
    return value.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _offset_of(value: datetime) -> timedelta:
    # A zoneinfo-aware datetime always has an offset.
    return value.utcoffset() or timedelta(0)


# ---------------------------------------------------------------- missed runs


@dataclass(frozen=True)
class SlotPlan:
    """What to do about the slots that came due since ``last``."""

    run: tuple[datetime, ...]  # create a job for each, oldest first
    missed: int  # due slots that will never run
    capped: bool  # RunAll had more runnable slots than the cap
    latest_due: datetime | None  # the newest due slot: store it as the next ``last``
    next_slot: datetime  # the first slot after now: when to wake up


def due_slots(
    schedule: Schedule,
    last: datetime,
    now: datetime,
    misfire_policy: MisfirePolicy,
    starting_deadline: timedelta | None = None,
    cap: int = MAX_CATCH_UP,
    grace: timedelta = ON_TIME_GRACE,
) -> SlotPlan:
    """Decide which slots in ``(last, now]`` run; see the module docstring for the rules."""
    last, now = _utc(last), _utc(now)
    next_slot = schedule.next_fire(max(last, now))
    latest = schedule.previous_fire(now)
    if latest <= last:
        return SlotPlan(run=(), missed=0, capped=False, latest_due=None, next_slot=next_slot)
    oldest_runnable = last if starting_deadline is None else max(last, now - starting_deadline)
    run: tuple[datetime, ...] = ()
    capped = False
    if misfire_policy == "RunAll":
        newest_first: list[datetime] = []
        for slot in schedule.slots_back_from(now):
            if slot <= last or slot < oldest_runnable or len(newest_first) > cap:
                break
            newest_first.append(slot)
        capped = len(newest_first) > cap
        run = tuple(reversed(newest_first[:cap]))
    elif misfire_policy == "RunOnce":
        run = (latest,) if latest >= oldest_runnable else ()
    elif now - latest <= (
        min(grace, (next_slot - latest) / 2) if starting_deadline is None else starting_deadline
    ):
        run = (latest,)
    missed = schedule.count(last, now) - len(run)
    return SlotPlan(run=run, missed=missed, capped=capped, latest_due=latest, next_slot=next_slot)


# ---------------------------------------------------------------- names


def job_name(recurring_name: str, slot: datetime) -> str:
    """The job for one slot: ``<name>-<minutes since the Unix epoch>``, as CronJob does."""
    _check_name(recurring_name)
    return f"{recurring_name}-{(_utc(slot) - _EPOCH) // _MINUTE}"


def trigger_job_name(recurring_name: str, token: str) -> str:
    """The job for one ``stoker.dev/trigger`` token: the same token always names the same job."""
    _check_name(recurring_name)
    digest = hashlib.sha256(token.encode()).hexdigest()[:8]
    return f"{recurring_name}-t{digest}"


def _check_name(recurring_name: str) -> None:
    if len(recurring_name) > RECURRING_NAME_MAX:
        raise ValueError(
            f"RecurringJob name {recurring_name!r} is longer than {RECURRING_NAME_MAX} "
            f"characters, so its job names would pass {JOB_NAME_MAX}"
        )


# ---------------------------------------------------------------- concurrency and history


@dataclass(frozen=True)
class ConcurrencyDecision:
    run: bool  # create the slot's job
    delete: tuple[str, ...]  # delete these active jobs first


def concurrency_decision(policy: ConcurrencyPolicy, active: Sequence[str]) -> ConcurrencyDecision:
    """What a slot does about the RecurringJob's jobs that are still active (as CronJob)."""
    if policy == "Forbid":
        return ConcurrencyDecision(run=not active, delete=())
    if policy == "Replace":
        return ConcurrencyDecision(run=True, delete=tuple(active))
    return ConcurrencyDecision(run=True, delete=())


def prune_history(
    finished: Iterable[tuple[str, str, datetime]],
    successful_limit: int,
    failed_limit: int,
) -> list[str]:
    """Names of finished jobs to delete, keeping the newest ``limit`` of each phase.

    ``finished`` holds (name, phase, finished at); phases other than Succeeded and Failed
    are never pruned. Returned oldest first.
    """
    limits = {"Succeeded": successful_limit, "Failed": failed_limit}
    newest_first = sorted(finished, key=lambda job: (job[2], job[0]), reverse=True)
    kept = dict.fromkeys(limits, 0)
    doomed: list[str] = []
    for name, phase, _ in newest_first:
        if phase not in limits:
            continue
        if kept[phase] < limits[phase]:
            kept[phase] += 1
        else:
            doomed.append(name)
    return doomed[::-1]
