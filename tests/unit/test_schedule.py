from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.api.models import JOB_NAME_MAX, RECURRING_NAME_MAX
from stoker.core import schedule as schedule_module
from stoker.core.schedule import (
    MAX_CATCH_UP,
    ON_TIME_GRACE,
    ConcurrencyDecision,
    MisfirePolicy,
    Schedule,
    ScheduleError,
    concurrency_decision,
    due_slots,
    job_name,
    parse,
    prune_history,
    trigger_job_name,
)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
POLICIES: tuple[MisfirePolicy, ...] = ("RunOnce", "RunAll", "Skip")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def forward(sched: Schedule, after: datetime, count: int) -> list[datetime]:
    slots, cursor = [], after
    for _ in range(count):
        cursor = sched.next_fire(cursor)
        slots.append(cursor)
    return slots


def between(sched: Schedule, after: datetime, until: datetime) -> list[datetime]:
    slots, cursor = [], sched.next_fire(after)
    while cursor <= until:
        slots.append(cursor)
        cursor = sched.next_fire(cursor)
    return slots


# ---------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field '61' is not valid: use 0-59"),
        ("* 24 * * *", "hour field '24' is not valid: use 0-23"),
        ("* * 0 * *", "day-of-month field '0' is not valid"),
        ("* * * 13 *", "month field '13' is not valid: use 1-12 or JAN-DEC"),
        ("* * * * 8", "day-of-week field '8' is not valid: use 0-7 or SUN-SAT"),
        ("* * * * FOO", "day-of-week field 'FOO' is not valid"),
        ("*/0 * * * *", "minute field '*/0' is not valid"),
        ("5-70 * * * *", "minute field '5-70' is not valid"),
        ("* * * *", "has 4 fields: expected 5 (minute hour day-of-month month day-of-week)"),
        ("0 * * * * *", "has 6 fields (seconds and years are not supported)"),
        ("0 0 * * * * 2030", "has 7 fields (seconds and years are not supported)"),
        ("", "has 0 fields"),
        ("@every_minute", "unknown macro '@every_minute': use one of @yearly, @annually"),
        ("@reboot", "unknown macro '@reboot'"),
        ("H * * * *", "minute field 'H': H and R values are not supported"),
        ("0 R * * *", "hour field 'R': H and R values are not supported"),
        ("0 0 30 2 *", "schedule '0 0 30 2 *' never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_bad_schedules_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(message)):
        parse(expression, "UTC")


@pytest.mark.parametrize(
    "zone", ["Mars/Base", "europe/berlin", "", "America", "../etc/passwd", "localtime"]
)
def test_unknown_time_zones_are_refused(zone: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(f"unknown time zone {zone!r}")):
        parse("0 2 * * *", zone)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("@yearly", "2024-05-05T10:00", "2025-01-01T00:00"),
        ("@annually", "2024-05-05T10:00", "2025-01-01T00:00"),
        ("@monthly", "2024-05-05T10:00", "2024-06-01T00:00"),
        ("@weekly", "2024-05-05T10:00", "2024-05-12T00:00"),  # 2024-05-05 is a Sunday
        ("@daily", "2024-05-05T10:00", "2024-05-06T00:00"),
        ("@midnight", "2024-05-05T10:00", "2024-05-06T00:00"),
        ("@hourly", "2024-05-05T10:00", "2024-05-05T11:00"),
        ("  0 9 * * MON-FRI ", "2024-05-04T10:00", "2024-05-06T09:00"),
        ("0 0 L * *", "2024-02-10T00:00", "2024-02-29T00:00"),
        ("0 0 * * 1#2", "2024-05-01T00:00", "2024-05-13T00:00"),
        ("0 0 29 2 *", "2097-01-01T00:00", "2104-02-29T00:00"),  # 2100 is not a leap year
    ],
)
def test_macros_and_extensions(expression: str, after: str, expected: str) -> None:
    assert parse(expression).next_fire(utc(after)) == utc(expected)


@pytest.mark.parametrize(
    ("expression", "both_passes"),
    [
        ("*/15 * * * *", True),
        ("30 * * * *", True),
        ("@hourly", True),
        ("0 */2 * * *", True),
        ("0 1/2 * * *", True),
        ("30 1 * * *", False),
        ("0 1,13 * * *", False),
        ("0 1-3 * * *", False),
        ("* 1 * * *", False),
        ("@daily", False),
    ],
)
def test_which_schedules_fire_in_both_passes_of_a_repeated_hour(
    expression: str, both_passes: bool
) -> None:
    assert parse(expression).fires_in_both_passes is both_passes


def test_aware_datetimes_only() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        parse("* * * * *").next_fire(datetime(2024, 1, 1))


# ---------------------------------------------------------------- next_fire


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("0 2 * * *", "UTC", "2024-01-15T02:00", "2024-01-16T02:00"),  # strictly after
        ("0 2 * * *", "UTC", "2024-01-15T01:59:59", "2024-01-15T02:00"),
        ("0 2 * * *", "Europe/Berlin", "2024-01-15T12:00", "2024-01-16T01:00"),  # CET
        ("0 2 * * *", "Europe/Berlin", "2024-07-15T12:00", "2024-07-16T00:00"),  # CEST
        ("0 2 * * *", "America/New_York", "2024-01-15T12:00", "2024-01-16T07:00"),
        ("0 2 * * *", "America/New_York", "2024-07-15T12:00", "2024-07-16T06:00"),
        ("30 9 * * *", "Asia/Kolkata", "2024-07-15T12:00", "2024-07-16T04:00"),
        ("0 0 * * *", "Asia/Kolkata", "2024-12-31T12:00", "2024-12-31T18:30"),
        ("0 2 * * *", "Australia/Lord_Howe", "2024-01-15T00:00", "2024-01-15T15:00"),  # +11
        ("0 2 * * *", "Australia/Lord_Howe", "2024-07-15T00:00", "2024-07-15T15:30"),  # +10:30
        ("0 0 1 * *", "Pacific/Kiritimati", "2024-01-15T00:00", "2024-01-31T10:00"),  # +14
    ],
)
def test_next_fire_across_time_zones(expression: str, zone: str, after: str, expected: str) -> None:
    fired = parse(expression, zone).next_fire(utc(after))
    assert fired == utc(expected)
    assert fired.tzinfo is UTC


def test_next_fire_accepts_any_aware_datetime() -> None:
    after = datetime(2024, 1, 15, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:00 UTC
    assert parse("0 * * * *").next_fire(after) == utc("2024-01-15T03:00")


# ---------------------------------------------------------------- daylight saving time


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # Spring forward, Europe/Berlin 2024-03-31: 02:00 CET jumps to 03:00 CEST.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2024-03-30T12:00+01:00",
            ["2024-03-31T03:00+02:00", "2024-04-01T02:30+02:00"],
        ),
        (
            "0 2 * * *",
            "Europe/Berlin",
            "2024-03-30T12:00+01:00",
            ["2024-03-31T03:00+02:00", "2024-04-01T02:00+02:00"],
        ),
        (  # several skipped slots and the 03:00 slot make one run
            "0,30 2,3 * * *",
            "Europe/Berlin",
            "2024-03-31T01:00+01:00",
            ["2024-03-31T03:00+02:00", "2024-03-31T03:30+02:00", "2024-04-01T02:00+02:00"],
        ),
        (
            "*/15 * * * *",
            "Europe/Berlin",
            "2024-03-31T01:30+01:00",
            ["2024-03-31T01:45+01:00", "2024-03-31T03:00+02:00", "2024-03-31T03:15+02:00"],
        ),
        (
            "45 * * * *",
            "Europe/Berlin",
            "2024-03-31T01:00+01:00",
            ["2024-03-31T01:45+01:00", "2024-03-31T03:00+02:00", "2024-03-31T03:45+02:00"],
        ),
        # Fall back, America/New_York 2024-11-03: 02:00 EDT goes back to 01:00 EST.
        (
            "30 1 * * *",
            "America/New_York",
            "2024-11-02T12:00-04:00",
            ["2024-11-03T01:30-04:00", "2024-11-04T01:30-05:00"],
        ),
        (  # asked from inside the second pass: that day's run is already behind
            "30 1 * * *",
            "America/New_York",
            "2024-11-03T01:10-05:00",
            ["2024-11-04T01:30-05:00"],
        ),
        (
            "*/30 * * * *",
            "America/New_York",
            "2024-11-03T00:00-04:00",
            [
                "2024-11-03T00:30-04:00",
                "2024-11-03T01:00-04:00",
                "2024-11-03T01:30-04:00",
                "2024-11-03T01:00-05:00",
                "2024-11-03T01:30-05:00",
                "2024-11-03T02:00-05:00",
            ],
        ),
        (
            "*/30 * * * *",
            "America/New_York",
            "2024-11-03T01:40-04:00",
            ["2024-11-03T01:00-05:00", "2024-11-03T01:30-05:00", "2024-11-03T02:00-05:00"],
        ),
        (
            "0 1-2 * * *",
            "America/New_York",
            "2024-11-03T00:00-04:00",
            ["2024-11-03T01:00-04:00", "2024-11-03T02:00-05:00", "2024-11-04T01:00-05:00"],
        ),
        # Australia/Lord_Howe moves by half an hour: 02:00 -> 02:30 and 02:00 -> 01:30.
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2024-10-05T12:00+10:30",
            ["2024-10-06T02:30+11:00", "2024-10-07T02:15+11:00"],
        ),
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2024-04-06T12:00+11:00",
            ["2024-04-07T01:45+11:00", "2024-04-08T01:45+10:30"],
        ),
        (
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2024-04-07T01:40+11:00",
            ["2024-04-07T01:45+11:00", "2024-04-07T01:30+10:30", "2024-04-07T01:45+10:30"],
        ),
        # America/Santiago changes at midnight: the skipped 00:00 runs at 01:00.
        (
            "0 0 * * *",
            "America/Santiago",
            "2024-09-07T12:00-04:00",
            ["2024-09-08T01:00-03:00", "2024-09-09T00:00-03:00"],
        ),
        (  # ... and 23:00-24:00 repeats on the Saturday of the fall-back
            "30 23 * * *",
            "America/Santiago",
            "2024-04-06T12:00-03:00",
            ["2024-04-06T23:30-03:00", "2024-04-07T23:30-04:00"],
        ),
        # Antarctica/Troll jumps by two hours.
        (
            "30 1 * * *",
            "Antarctica/Troll",
            "2024-03-30T12:00+00:00",
            ["2024-03-31T03:00+02:00", "2024-04-01T01:30+02:00"],
        ),
    ],
)
def test_daylight_saving_time(expression: str, zone: str, after: str, expected: list[str]) -> None:
    sched = parse(expression, zone)
    got = forward(sched, datetime.fromisoformat(after), len(expected))
    assert got == [datetime.fromisoformat(text).astimezone(UTC) for text in expected]


def test_croniter_alone_fires_a_fixed_time_twice_when_the_clock_goes_back() -> None:
    # Why the module maps wall-clock times itself: keep this test as the reason.
    new_york = ZoneInfo("America/New_York")
    raw = croniter("30 1 * * *", datetime(2024, 11, 2, 12, tzinfo=new_york))
    raw_fires = [raw.get_next(datetime).astimezone(UTC) for _ in range(2)]
    assert raw_fires[1] - raw_fires[0] == HOUR
    ours = forward(parse("30 1 * * *", "America/New_York"), raw_fires[0] - MINUTE, 2)
    assert ours[1] - ours[0] == DAY + HOUR


# ---------------------------------------------------------------- properties against a brute force

ZONES_AND_TRANSITIONS = [
    ("UTC", "2024-06-01T00:00"),
    ("Asia/Kolkata", "2024-06-01T00:00"),
    ("Europe/Berlin", "2024-03-31T01:00"),
    ("Europe/Berlin", "2024-10-27T01:00"),
    ("America/New_York", "2024-03-10T07:00"),
    ("America/New_York", "2024-11-03T06:00"),
    ("Australia/Lord_Howe", "2024-10-05T15:30"),
    ("Australia/Lord_Howe", "2024-04-06T15:00"),
    ("America/Santiago", "2024-09-08T04:00"),
    ("America/Santiago", "2024-04-07T03:00"),
    ("Antarctica/Troll", "2024-03-31T01:00"),
    ("Antarctica/Troll", "2024-10-27T01:00"),
]
EXPRESSIONS = [
    "30 2 * * *",
    "30 1 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "*/7 1-3 * * *",
    "0 0 * * *",
    "45 23 * * *",
    "0,30 0-2 * * 0",
    "* 1 * * *",
    "0 */2 * * *",
    "59 1,2 * * *",
    "0 3 * * *",
    "5 0 L * *",
    "@daily",
    "0 1 * * 1-5",
    "10-20/5 2 * * *",
]


def brute_force(sched: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """Slots in (after, until], found by walking every real minute (DST rules restated)."""
    zone = sched.zone
    first_wall = (after - DAY).astimezone(zone).replace(tzinfo=None)
    last_wall = (until + DAY).astimezone(zone).replace(tzinfo=None)
    walls = croniter(sched.expression, first_wall)
    slot_walls = set()
    while (wall := walls.get_next(datetime)) <= last_wall:
        slot_walls.add(wall)
    found = set()
    instant = after.replace(second=0, microsecond=0) + MINUTE
    while instant <= until:
        here, before = instant.astimezone(zone), (instant - MINUTE).astimezone(zone)
        wall = here.replace(tzinfo=None)
        if wall in slot_walls and (sched.fires_in_both_passes or here.fold == 0):
            found.add(instant)
        offset, previous_offset = here.utcoffset(), before.utcoffset()
        assert offset is not None and previous_offset is not None
        if offset > previous_offset:  # the walls skipped just now fire at this instant
            skipped = before.replace(tzinfo=None) + MINUTE
            while skipped < wall:
                if skipped in slot_walls:
                    found.add(instant)
                skipped += MINUTE
        instant += MINUTE
    return sorted(found)


windows = st.builds(
    lambda zone_and_moment, expression, start, length, seconds: (
        parse(expression, zone_and_moment[0]),
        utc(zone_and_moment[1]) + timedelta(minutes=start, seconds=seconds),
        timedelta(minutes=length),
    ),
    st.sampled_from(ZONES_AND_TRANSITIONS),
    st.sampled_from(EXPRESSIONS),
    st.integers(-36 * 60, 24 * 60),
    st.integers(0, 48 * 60),
    st.sampled_from([0, 0, 30]),
)


@settings(max_examples=150, deadline=None)
@given(windows)
def test_enumeration_matches_the_brute_force(window: tuple[Schedule, datetime, timedelta]) -> None:
    sched, after, length = window
    expected = brute_force(sched, after, after + length)
    assert between(sched, after, after + length) == expected
    assert sched.count(after, after + length) == len(expected)
    backwards = list(itertools.islice(sched.slots_back_from(after + length), len(expected) + 1))
    assert [slot for slot in backwards if slot > after][::-1] == expected


@settings(max_examples=150, deadline=None)
@given(windows)
def test_next_and_previous_fire_bracket_every_instant(
    window: tuple[Schedule, datetime, timedelta],
) -> None:
    sched, moment, _ = window
    nxt, previous = sched.next_fire(moment), sched.previous_fire(moment)
    assert previous <= moment < nxt
    assert sched.next_fire(previous) == nxt
    assert sched.previous_fire(nxt) == nxt
    assert sched.previous_fire(nxt - timedelta(microseconds=1)) == previous


@settings(max_examples=50, deadline=None)
@given(windows)
def test_slots_strictly_increase(window: tuple[Schedule, datetime, timedelta]) -> None:
    sched, after, _ = window
    slots = forward(sched, after, 60)
    assert all(a < b for a, b in itertools.pairwise(slots))
    assert slots[0] > after


@pytest.mark.parametrize(
    ("expression", "zone", "after", "until", "expected"),
    [
        ("0 * * * *", "UTC", "2023-01-01T00:00", "2025-01-01T00:00", (365 + 366) * 24),
        # Every real minute matches: skipped walls fold into 03:00, repeated ones fire twice.
        ("* * * * *", "Europe/Berlin", "2023-01-01T00:00", "2025-01-01T00:00", 731 * 1440),
        ("*/30 * * * *", "America/New_York", "2024-01-01T00:00", "2025-01-01T00:00", 366 * 48),
        # Once a day, every day, however the clock moves.
        ("30 2 * * *", "Europe/Berlin", "2024-01-01T00:00", "2025-01-01T00:00", 366),
        ("30 1 * * *", "America/New_York", "2024-01-01T00:00", "2025-01-01T00:00", 366),
        ("0 0 * * *", "America/Santiago", "2024-01-01T00:00", "2025-01-01T00:00", 366),
        ("15 2 * * *", "Australia/Lord_Howe", "2024-01-01T00:00", "2025-01-01T00:00", 366),
        ("0 12 * * 1-5", "UTC", "2024-01-01T00:00", "2025-01-01T00:00", 262),
        ("0 0 1 * *", "Asia/Kolkata", "2023-12-31T18:30", "2024-12-31T18:30", 12),
        ("0 0 29 2 *", "UTC", "2000-01-01T00:00", "2100-12-31T00:00", 25),
    ],
)
def test_count_over_long_ranges(
    expression: str, zone: str, after: str, until: str, expected: int
) -> None:
    assert parse(expression, zone).count(utc(after), utc(until)) == expected


# ---------------------------------------------------------------- due_slots

HOURLY = parse("0 * * * *")
TEN = utc("2024-05-01T10:00")
ELEVEN, NOON = TEN + HOUR, TEN + 2 * HOUR


@pytest.mark.parametrize(
    ("policy", "now", "deadline", "run", "missed"),
    [
        # Down across 11:00 and 12:00, back 30 s after 12:00: 12:00 is on time.
        ("RunOnce", NOON + 30 * timedelta(seconds=1), None, [NOON], 1),
        ("RunAll", NOON + 30 * timedelta(seconds=1), None, [ELEVEN, NOON], 0),
        ("Skip", NOON + 30 * timedelta(seconds=1), None, [NOON], 1),
        # Back at 12:05: 12:00 is late too.
        ("RunOnce", NOON + 5 * MINUTE, None, [NOON], 1),
        ("RunAll", NOON + 5 * MINUTE, None, [ELEVEN, NOON], 0),
        ("Skip", NOON + 5 * MINUTE, None, [], 2),
        # A deadline drops what is older, under every policy, and is Skip's tolerance.
        ("RunOnce", NOON + 5 * MINUTE, 10 * MINUTE, [NOON], 1),
        ("RunAll", NOON + 5 * MINUTE, 10 * MINUTE, [NOON], 1),
        ("Skip", NOON + 5 * MINUTE, 10 * MINUTE, [NOON], 1),
        ("RunAll", NOON + 5 * MINUTE, 70 * MINUTE, [ELEVEN, NOON], 0),
        ("RunOnce", NOON + 5 * MINUTE, 5 * MINUTE, [NOON], 1),  # the boundary still runs
        ("RunOnce", NOON + 5 * MINUTE, 4 * MINUTE, [], 2),
        ("RunAll", NOON + 5 * MINUTE, 4 * MINUTE, [], 2),
        ("Skip", NOON + 5 * MINUTE, 4 * MINUTE, [], 2),
        ("Skip", NOON + 30 * timedelta(seconds=1), 10 * timedelta(seconds=1), [], 2),
    ],
)
def test_misfire_policies_after_an_outage_across_two_slots(
    policy: MisfirePolicy,
    now: datetime,
    deadline: timedelta | None,
    run: list[datetime],
    missed: int,
) -> None:
    plan = due_slots(HOURLY, TEN, now, policy, deadline)
    assert list(plan.run) == run
    assert plan.missed == missed
    assert plan.capped is False
    assert plan.latest_due == NOON
    assert plan.next_slot == NOON + HOUR


@pytest.mark.parametrize("policy", POLICIES)
def test_a_slot_handled_on_time_runs_under_every_policy(policy: MisfirePolicy) -> None:
    plan = due_slots(HOURLY, TEN, ELEVEN + timedelta(seconds=2), policy, timedelta(minutes=1))
    assert (plan.run, plan.missed, plan.latest_due) == ((ELEVEN,), 0, ELEVEN)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("now", [TEN + 30 * MINUTE, TEN, TEN - HOUR])
def test_nothing_due(policy: MisfirePolicy, now: datetime) -> None:
    plan = due_slots(HOURLY, TEN, now, policy)
    assert (plan.run, plan.missed, plan.capped, plan.latest_due) == ((), 0, False, None)
    assert plan.next_slot == ELEVEN  # never a slot at or before the handled one


def test_run_all_catches_up_the_most_recent_hundred_after_two_years() -> None:
    now = utc("2026-05-01T12:00:30")
    plan = due_slots(parse("* * * * *", "Europe/Berlin"), now - 730 * DAY, now, "RunAll")
    assert plan.capped is True
    assert len(plan.run) == MAX_CATCH_UP
    assert list(plan.run) == [utc("2026-05-01T12:00") - i * MINUTE for i in range(99, -1, -1)]
    assert plan.missed == 730 * 1440 - MAX_CATCH_UP
    assert plan.next_slot == utc("2026-05-01T12:01")


@pytest.mark.parametrize("policy", POLICIES)
def test_long_outages_are_counted_without_walking_every_slot(
    policy: MisfirePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = 0

    class Counting(croniter):  # type: ignore[misc]
        def get_next(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal steps
            steps += 1
            return super().get_next(*args, **kwargs)

        def get_prev(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal steps
            steps += 1
            return super().get_prev(*args, **kwargs)

    monkeypatch.setattr(schedule_module, "croniter", Counting)
    now = utc("2026-05-01T12:00:30")
    plan = due_slots(parse("* * * * *", "America/New_York"), now - 730 * DAY, now, policy)
    assert plan.missed + len(plan.run) == 730 * 1440
    assert steps < 5_000  # about one per day, not one per minute


def test_run_all_at_exactly_the_cap_is_not_capped() -> None:
    now = utc("2024-05-01T12:00")
    plan = due_slots(parse("* * * * *"), now - 100 * MINUTE, now, "RunAll")
    assert (len(plan.run), plan.capped, plan.missed) == (100, False, 0)
    plan = due_slots(parse("* * * * *"), now - 101 * MINUTE, now, "RunAll")
    assert (len(plan.run), plan.capped, plan.missed) == (100, True, 1)


def test_slots_across_daylight_saving_time_are_planned_once() -> None:
    new_york = parse("30 1 * * *", "America/New_York")
    last = datetime.fromisoformat("2024-11-02T12:00-04:00")
    now = datetime.fromisoformat("2024-11-03T03:00-05:00")
    plan = due_slots(new_york, last, now, "RunAll")
    assert plan.run == (datetime.fromisoformat("2024-11-03T01:30-04:00").astimezone(UTC),)
    assert plan.missed == 0


plans = st.builds(
    lambda window, policy, deadline, cap, gap: (
        window[0],
        window[1],
        window[1] + gap,
        policy,
        deadline,
        cap,
    ),
    windows,
    st.sampled_from(POLICIES),
    st.one_of(st.none(), st.integers(0, 600).map(lambda m: timedelta(minutes=m))),
    st.integers(1, 10),
    st.integers(0, 3 * 24 * 60).map(lambda m: timedelta(minutes=m, seconds=17)),
)


@settings(max_examples=200, deadline=None)
@given(plans)
def test_slot_plans_obey_their_rules(
    case: tuple[Schedule, datetime, datetime, MisfirePolicy, timedelta | None, int],
) -> None:
    sched, last, now, policy, deadline, cap = case
    plan = due_slots(sched, last, now, policy, deadline, cap)
    due = brute_force(sched, last, now)
    assert len(plan.run) <= cap
    assert list(plan.run) == sorted(set(plan.run))
    assert set(plan.run) <= set(due)
    assert plan.missed + len(plan.run) == len(due)
    assert plan.latest_due == (due[-1] if due else None)
    assert plan.next_slot == sched.next_fire(now) > now
    if deadline is not None:
        assert all(now - slot <= deadline for slot in plan.run)
    if policy == "Skip":
        tolerance = ON_TIME_GRACE if deadline is None else deadline
        assert all(now - slot <= tolerance for slot in plan.run)
    if policy != "RunAll":
        assert len(plan.run) <= 1
    if policy == "RunAll":
        runnable = [s for s in due if deadline is None or now - s <= deadline]
        assert list(plan.run) == runnable[-cap:]
        assert plan.capped == (len(runnable) > cap)
    if policy == "RunOnce" and due and (deadline is None or now - due[-1] <= deadline):
        assert plan.run == (due[-1],)


# ---------------------------------------------------------------- names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_job_names_count_minutes_since_the_epoch() -> None:
    assert job_name("nightly-report", utc("2024-01-01T00:00")) == "nightly-report-28401120"
    assert job_name("r", datetime.fromisoformat("2024-01-01T01:00:59+01:00")) == "r-28401120"
    assert job_name("r", utc("2024-01-01T00:01")) == "r-28401121"


def test_trigger_job_names_follow_the_token() -> None:
    assert trigger_job_name("nightly-report", "abc") == "nightly-report-tba7816bf"
    assert trigger_job_name("r", "one") == trigger_job_name("r", "one")
    assert trigger_job_name("r", "one") != trigger_job_name("r", "two")


names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", fullmatch=True)


@given(
    names,
    st.datetimes(datetime(2000, 1, 1), datetime(9999, 1, 1), timezones=st.just(UTC)),
    st.text(),
)
def test_names_are_dns_labels_that_fit(name: str, slot: datetime, token: str) -> None:
    assert len(name) <= RECURRING_NAME_MAX
    for made in (job_name(name, slot), trigger_job_name(name, token)):
        assert DNS_LABEL.match(made)
        assert len(made) <= JOB_NAME_MAX


@pytest.mark.parametrize("make", [lambda n: job_name(n, TEN), lambda n: trigger_job_name(n, "t")])
def test_names_too_long_for_a_job_are_refused(make: Any) -> None:
    with pytest.raises(ValueError, match="longer than 52"):
        make("a" * (RECURRING_NAME_MAX + 1))


# ---------------------------------------------------------------- concurrency


@pytest.mark.parametrize(
    ("policy", "active", "expected"),
    [
        ("Allow", [], ConcurrencyDecision(run=True, delete=())),
        ("Allow", ["r-1"], ConcurrencyDecision(run=True, delete=())),
        ("Forbid", [], ConcurrencyDecision(run=True, delete=())),
        ("Forbid", ["r-1"], ConcurrencyDecision(run=False, delete=())),
        ("Replace", [], ConcurrencyDecision(run=True, delete=())),
        ("Replace", ["r-1", "r-2"], ConcurrencyDecision(run=True, delete=("r-1", "r-2"))),
    ],
)
def test_concurrency_policies(
    policy: Any, active: list[str], expected: ConcurrencyDecision
) -> None:
    assert concurrency_decision(policy, active) == expected


# ---------------------------------------------------------------- history


def finished(name: str, phase: str, minute: int) -> tuple[str, str, datetime]:
    return (name, phase, TEN + minute * MINUTE)


HISTORY = [
    finished("s1", "Succeeded", 1),
    finished("f1", "Failed", 2),
    finished("s2", "Succeeded", 3),
    finished("s3", "Succeeded", 4),
    finished("f2", "Failed", 5),
    finished("s4", "Succeeded", 6),
]


@pytest.mark.parametrize(
    ("successful", "failed", "doomed"),
    [
        (3, 1, ["s1", "f1"]),
        (0, 0, ["s1", "f1", "s2", "s3", "f2", "s4"]),
        (10, 10, []),
        (1, 2, ["s1", "s2", "s3"]),
    ],
)
def test_history_keeps_the_newest_of_each_phase(
    successful: int, failed: int, doomed: list[str]
) -> None:
    assert prune_history(reversed(HISTORY), successful, failed) == doomed


def test_history_ignores_unfinished_phases_and_breaks_ties_by_name() -> None:
    history = [
        finished("b", "Succeeded", 1),
        finished("a", "Succeeded", 1),
        finished("x", "Running", 0),
    ]
    assert prune_history(history, 1, 1) == ["a"]


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1),
            st.sampled_from(["Succeeded", "Failed"]),
            st.datetimes(timezones=st.just(UTC)),
        ),
        unique_by=lambda job: job[0],
    ),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_history_pruning_leaves_the_limit_of_each_phase(
    history: list[tuple[str, str, datetime]], successful: int, failed: int
) -> None:
    doomed = set(prune_history(history, successful, failed))
    for phase, limit in (("Succeeded", successful), ("Failed", failed)):
        of_phase = [job for job in history if job[1] == phase]
        kept = [job for job in of_phase if job[0] not in doomed]
        assert len(kept) == min(limit, len(of_phase))
        if kept and len(kept) < len(of_phase):
            assert min(job[2] for job in kept) >= max(
                job[2] for job in of_phase if job[0] in doomed
            )
