"""The termination message: at most 4096 bytes of valid UTF-8, written where Kubernetes reads."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from runner_harness import Runner
from stoker_runner import termination


@given(st.text(), st.integers(min_value=len(termination.TRIMMED_MARKER) + 4, max_value=5000))
def test_trim_fits_the_limit_and_keeps_the_head(message: str, limit: int) -> None:
    trimmed = termination.trim(message, limit)

    assert len(trimmed) <= limit
    text = trimmed.decode("utf-8")  # never a split character
    encoded = message.encode("utf-8", errors="backslashreplace")
    if len(encoded) <= limit:
        assert trimmed == encoded
    else:
        assert trimmed.endswith(termination.TRIMMED_MARKER)
        head = text.removesuffix(termination.TRIMMED_MARKER.decode())
        assert encoded.decode().startswith(head)
        # At most one partial character (up to 3 bytes) is dropped beyond the marker.
        assert len(trimmed) >= limit - 3


def test_trim_default_limit_is_kubernetes_4096_bytes() -> None:
    assert len(termination.trim("x" * 10_000)) == 4096


def test_trim_escapes_what_utf8_cannot_encode() -> None:
    assert termination.trim("bad \udcff surrogate") == b"bad \\udcff surrogate"


def test_a_long_message_is_trimmed_in_the_file(runner: Runner) -> None:
    result = runner.run("boom", json.dumps({"message": "é" * 5000}))

    assert result.code == 1
    assert result.termination is not None
    assert len(result.termination) <= 4096
    assert result.termination.decode().startswith("ValueError: éé")
    assert result.termination.endswith(b" [trimmed]")


def test_an_unwritable_termination_log_does_not_change_the_outcome(runner: Runner) -> None:
    unwritable = runner.tasks_dir / "no-such-directory" / "termination-log"

    result = runner.run(
        "boom", '{"message": "still reported"}', STOKER_TERMINATION_LOG=str(unwritable)
    )

    assert result.code == 1
    assert "ValueError: still reported" in result.stderr
    assert not unwritable.exists()


def test_the_message_replaces_an_existing_file(runner: Runner) -> None:
    runner.termination_log.write_text("left over from before, much longer than the message")

    result = runner.run("boom", '{"message": "fresh"}')

    assert result.termination == b"ValueError: fresh"


def test_exception_notes_are_part_of_the_message(runner: Runner) -> None:
    (runner.tasks_dir / "noted_tasks.py").write_text(
        "from stoker_runner import task\n\n"
        "@task\ndef noted():\n"
        "    error = KeyError('invoice')\n"
        "    error.add_note('while posting to the ledger')\n"
        "    raise error\n"
    )

    result = runner.run("noted", STOKER_TASK_MODULES="noted_tasks")

    assert result.termination == b"KeyError: 'invoice'\nwhile posting to the ledger"
