"""The generated CRDs: structural, complete, current; refusing bad input with clear messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from stoker.api import crds, models
from stoker.api.durations import format_duration, parse_duration

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
BY_KIND = {kind.kind: crds.crd(kind) for kind in crds.KINDS}

Node = dict[str, Any]


def root(kind: str) -> Node:
    schema: Node = BY_KIND[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def at(kind: str, path: str) -> Node:
    """The schema node at a dotted path below the root; '[]' steps into array items."""
    node = root(kind)
    for step in path.split("."):
        node = node["items"] if step == "[]" else node["properties"][step]
    return node


def walk(
    node: Node, path: str = "", arrays: tuple[Node, ...] = ()
) -> Iterator[tuple[str, Node, tuple[Node, ...]]]:
    """Every schema node with its path and the array nodes that enclose it."""
    yield path, node, arrays
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}", arrays)
    if "items" in node:
        yield from walk(node["items"], f"{path}[]", (*arrays, node))
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*", arrays)


def all_nodes() -> Iterator[tuple[str, str, Node, tuple[Node, ...]]]:
    for kind in BY_KIND:
        for path, node, arrays in walk(root(kind)):
            yield kind, path, node, arrays


# ---------------------------------------------------------------- CEL string literals

_CEL_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                "\\": "\\", "'": "'", '"': '"', "`": "`", "?": "?"}  # fmt: skip
# Numeric escapes: \xHH, \uHHHH, \UHHHHHHHH and three-digit octal.
_CEL_NUMERIC_ESCAPE = re.compile(
    r"[xX]([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-3][0-7]{2})"
)
# A one-line CEL string literal: optional raw prefix, then '...' or "...".
_CEL_LITERAL = re.compile(r"""([rR]?)(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""")


def cel_literal(match: re.Match[str]) -> str:
    """The value of a CEL string literal matched by _CEL_LITERAL."""
    return cel_string(bool(match.group(1)), match.group(2) or match.group(3) or "")


def cel_string(raw: bool, body: str) -> str:
    """The value of a quoted CEL string's body, refusing what cel-go refuses to unescape."""
    if raw:
        return body
    out, i = [], 0
    while i < len(body):
        if body[i] != "\\":
            out.append(body[i])
            i += 1
            continue
        escape = body[i + 1]
        numeric = _CEL_NUMERIC_ESCAPE.match(body, i + 1)
        if escape in _CEL_ESCAPES:
            out.append(_CEL_ESCAPES[escape])
            i += 2
        elif numeric:
            hex_digits = numeric.group(1) or numeric.group(2) or numeric.group(3)
            out.append(chr(int(hex_digits, 16) if hex_digits else int(numeric.group(4), 8)))
            i = numeric.end()
        else:
            raise ValueError(
                f"\\{escape} is not a CEL escape: the rule does not compile "
                "(write the literal as r'...' or double the backslash)"
            )
    return "".join(out)


@pytest.mark.parametrize(
    ("literal", "value"),
    [(r"'a\\.b'", r"a\.b"), (r"r'a\.b'", r"a\.b"), (r"'\u00b5s'", "µs"), (r"'\x41\101'", "AA"),
     (r"'it\'s'", "it's"), (r'"a\"b"', 'a"b'), (r"'\.'", None), (r"'\s'", None), (r"'\d+'", None)],
)  # fmt: skip
def test_cel_string_follows_cel_go(literal: str, value: str | None) -> None:
    match = _CEL_LITERAL.fullmatch(literal)
    assert match
    if value is None:
        with pytest.raises(ValueError, match="not a CEL escape"):
            cel_literal(match)
    else:
        assert cel_literal(match) == value


def matches_pattern(rule: str) -> str:
    """The regular expression of a `self.matches('...')` rule, as CEL would see it."""
    match = re.fullmatch(r"self\.matches\(" + _CEL_LITERAL.pattern + r"\)", rule)
    assert match, rule
    return cel_literal(match)


def rules_at(kind: str, path: str) -> list[dict[str, str]]:
    rules: list[dict[str, str]] = at(kind, path)["x-kubernetes-validations"]
    return rules


def format_rule(kind: str, path: str) -> dict[str, str]:
    """The rule of a string field that checks its form (`self.matches(...)`)."""
    [rule] = [r for r in rules_at(kind, path) if r["rule"].startswith("self.matches(")]
    return rule


def cel_accepts(kind: str, path: str, value: str) -> bool:
    return re.search(matches_pattern(format_rule(kind, path)["rule"]), value) is not None


# ---------------------------------------------------------------- staleness


def test_committed_crds_are_current() -> None:
    diffs = crds.stale(CRDS_DIR)
    assert not diffs, (
        "crds/ is stale: run `uv run python -m stoker.api.crds write crds/`\n" + "".join(diffs)
    )


def test_check_fails_on_a_stale_or_missing_file_and_passes_after_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crds.main(["check", str(tmp_path)]) == 1
    assert crds.main(["write", str(tmp_path)]) == 0
    assert crds.main(["check", str(tmp_path)]) == 0
    target = tmp_path / "jobqueues.yaml"
    target.write_text(target.read_text().replace("jq", "queue"))
    capsys.readouterr()
    assert crds.main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "-    - queue\n+    - jq\n" in out.out
    assert "1 CRD file(s)" in out.err
    assert crds.write(tmp_path) == [target]
    assert crds.main(["check", str(tmp_path)]) == 0


def test_rendering_is_deterministic_and_starts_with_the_header() -> None:
    first, second = crds.rendered(), crds.rendered()
    assert first == second
    assert sorted(first) == ["backgroundjobs.yaml", "jobqueues.yaml", "recurringjobs.yaml"]
    for text in first.values():
        assert text.startswith(crds.HEADER)
        assert crds.HEADER.startswith("# Generated by `python -m stoker.api.crds write crds/`")


def test_a_value_used_twice_is_written_out_twice() -> None:
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    kind = crds.CrdKind(
        kind="Probe",
        plural="probes",
        short_name="pr",
        description="two columns sharing one dict",
        spec=models.JobQueueSpec,
        status=models.JobQueueStatus,
        columns=[age, age],
    )
    text = crds.render(kind)
    assert "&" not in text
    assert text.count("jsonPath: .metadata.creationTimestamp") == 2


# ---------------------------------------------------------------- names and versions


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        ("BackgroundJob", "backgroundjobs", "bgj"),
        ("RecurringJob", "recurringjobs", "rj"),
        ("JobQueue", "jobqueues", "jq"),
    ],
)
def test_names_group_and_version(kind: str, plural: str, short: str) -> None:
    crd = BY_KIND[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.stoker.dev"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("stoker.dev", "Namespaced")
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["stoker"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (
            "BackgroundJob",
            [("Phase", "string", ".status.phase"), ("Queue", "string", ".spec.queue"),
             ("Attempt", "integer", ".status.attempt"), ("Reason", "string", ".status.reason"),
             ("Next Attempt", "string", ".status.nextAttemptAt")],
        ),
        (
            "RecurringJob",
            [("Schedule", "string", ".spec.schedule"), ("TimeZone", "string", ".spec.timeZone"),
             ("Suspend", "boolean", ".spec.suspend"), ("Last", "date", ".status.lastScheduleTime"),
             ("Next", "string", ".status.nextScheduleTime")],
        ),
        (
            "JobQueue",
            [("Concurrency", "integer", ".spec.concurrency"),
             ("Priority", "integer", ".spec.priority"),
             ("Suspend", "boolean", ".spec.suspend"), ("Enqueued", "integer", ".status.enqueued"),
             ("Running", "integer", ".status.running")],
        ),
    ],
)  # fmt: skip
def test_printer_columns(kind: str, columns: list[tuple[str, str, str]]) -> None:
    expected = [*columns, ("Age", "date", ".metadata.creationTimestamp")]
    printed = BY_KIND[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in printed] == expected
    for _, _, json_path in columns:
        # A column must point at a field the schema has, or it prints nothing forever.
        at(kind, json_path.removeprefix("."))


# ---------------------------------------------------------------- structural schema


def test_every_node_is_typed_and_arrays_have_items() -> None:
    for kind, path, node, _ in all_nodes():
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), (kind, path)
        if node.get("type") == "array":
            assert "items" in node, (kind, path)
        assert not ("properties" in node and "additionalProperties" in node), (kind, path)


# Described by the API server itself (TypeMeta, ObjectMeta), and kopf's own bookkeeping.
NOT_OURS = {".apiVersion", ".kind", ".metadata", ".metadata.name", ".status.kopf"}


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    """`kubectl explain bgj.spec.retry` prints the schema's descriptions: every property we
    declare has one, down to the leaves (array items and map values are not properties; what a
    free-form object holds beyond its declared properties is not ours)."""
    undescribed = [
        (kind, path)
        for kind, path, node, _ in all_nodes()
        if path and not path.endswith(("[]", ".*"))
        and path not in NOT_OURS and not path.startswith(".status.kopf.")
        and not str(node.get("description", "")).strip()
    ]  # fmt: skip
    assert undescribed == []
    assert at("BackgroundJob", "spec.retry")["description"].startswith("The retry policy")
    assert at("BackgroundJob", "spec.retry.attempts")["description"] == (
        "Retries after the first failed attempt; 0 = never retry."
    )


ADMISSION_DEFAULTS = {
    ("BackgroundJob", ".spec.queue"),
    ("RecurringJob", ".spec.jobTemplate.spec.queue"),
    ("RecurringJob", ".spec.timeZone"),
    ("RecurringJob", ".spec.suspend"),
}


def test_nothing_a_structural_schema_forbids_or_the_crd_must_not_store_is_left() -> None:
    for kind, path, node, _ in all_nodes():
        leftover = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const"}
        if (kind, path) not in ADMISSION_DEFAULTS:
            leftover.add("default")
        assert not leftover & node.keys(), (kind, path, leftover & node.keys())
        assert node.get("additionalProperties") is not True, (kind, path)
        assert node.get("type") != "null", (kind, path)


def test_spec_is_required_and_status_has_room_for_kopf() -> None:
    for kind in BY_KIND:
        assert root(kind)["required"] == ["spec"]
        assert at(kind, "status.kopf") == {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
        }


def test_optional_fields_keep_their_type_without_null() -> None:
    start_at = at("BackgroundJob", "spec.startAt")
    assert {k: v for k, v in start_at.items() if k != "description"} == {
        "type": "string",
        "format": "date-time",
    }
    assert at("JobQueue", "spec.concurrency")["type"] == "integer"
    assert at("BackgroundJob", "spec.task")["required"] == ["name"]


def test_pod_spec_requires_named_containers_and_keeps_everything_else() -> None:
    for kind, prefix in [("BackgroundJob", "spec"), ("RecurringJob", "spec.jobTemplate.spec")]:
        pod_spec = at(kind, f"{prefix}.template.spec")
        assert pod_spec["x-kubernetes-preserve-unknown-fields"] is True
        assert pod_spec["required"] == ["containers"]
        containers = pod_spec["properties"]["containers"]
        assert (containers["type"], containers["minItems"]) == ("array", 1)
        item = containers["items"]
        assert item["type"] == "object"
        assert item["required"] == ["name"]
        assert item["x-kubernetes-preserve-unknown-fields"] is True


def test_literal_types_become_enums() -> None:
    assert at("BackgroundJob", "spec.afterCondition")["enum"] == ["Succeeded", "Finished"]
    assert at("BackgroundJob", "spec.retry.onExhausted")["enum"] == ["Fail", "Delete"]
    assert at("RecurringJob", "spec.concurrencyPolicy")["enum"] == ["Allow", "Forbid", "Replace"]
    assert at("BackgroundJob", "status.phase")["enum"] == list(get_args(models.Phase))


def test_only_marked_defaults_are_applied_at_admission() -> None:
    # Objects are stored as applied, but for the queue: `kubectl get bgj` and label selectors
    # must see which queue a job is in, so the API server fills in "default".
    assert at("BackgroundJob", "spec.queue")["default"] == "default"
    assert at("RecurringJob", "spec.timeZone")["default"] == "UTC"
    assert "default" not in at("BackgroundJob", "spec.retry.attempts")
    assert "default" not in at("RecurringJob", "spec.misfirePolicy")


# ---------------------------------------------------------------- CEL rules


def test_cross_field_rules_sit_on_every_background_job_spec() -> None:
    for kind, path in [("BackgroundJob", "spec"), ("RecurringJob", "spec.jobTemplate.spec")]:
        assert at(kind, path)["x-kubernetes-validations"] == models.BACKGROUND_JOB_RULES


@pytest.mark.parametrize(
    ("kind", "limit", "message"),
    [
        ("BackgroundJob", models.JOB_NAME_MAX,
         "name must be at most 63 characters: it is a label value on the job's pods"),
        ("RecurringJob", models.RECURRING_NAME_MAX,
         "name must be at most 52 characters: its jobs are named <name>-<slot>"),
    ],
)  # fmt: skip
def test_name_length_rule_at_the_root(kind: str, limit: int, message: str) -> None:
    assert root(kind)["x-kubernetes-validations"][0] == {
        "rule": f"self.metadata.name.size() <= {limit}",
        "message": message,
        "fieldPath": ".metadata.name",
    }


def test_a_job_waiting_for_itself_is_refused_at_the_root() -> None:
    [rule] = [r for r in root("BackgroundJob")["x-kubernetes-validations"] if "after" in r["rule"]]
    assert rule["rule"] == (
        "!has(self.spec.after) || self.spec.after.all(ref, ref.name != self.metadata.name)"
    )
    assert rule["fieldPath"] == ".spec.after"


def test_every_field_path_names_a_field_below_its_rule() -> None:
    # The API server refuses a CRD whose rule reports at a path its schema does not have.
    for kind, path, node, _ in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            if "fieldPath" in rule:
                target = node
                for step in rule["fieldPath"].removeprefix(".").split("."):
                    target = target["properties"][step]
                assert target["type"], (kind, path, rule)


def test_job_queue_has_no_name_rule() -> None:
    assert "x-kubernetes-validations" not in root("JobQueue")


def test_cel_cost_is_bounded() -> None:
    """The API server refuses rules whose worst-case cost it cannot bound: strings a rule reads
    need maxLength, and every list above a rule needs maxItems."""
    with_rules = [
        (k, p, n, a) for k, p, n, a in all_nodes() if "x-kubernetes-validations" in n and p
    ]
    assert len(with_rules) >= 10
    for kind, path, node, arrays in with_rules:
        if node["type"] == "string":
            assert "maxLength" in node, (kind, path)
        for array in arrays:
            assert "maxItems" in array, (kind, path)


def test_cel_string_literals_are_valid_cel() -> None:
    """A literal cel-go cannot unescape (e.g. '\\.') makes the API server reject the whole CRD."""
    for kind, path, node, _ in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            for literal in _CEL_LITERAL.finditer(rule["rule"]):
                try:
                    cel_literal(literal)
                except ValueError as error:
                    pytest.fail(f"{kind} {path or '<root>'}: {rule['rule']}: {error}")


DURATION_FIELDS = [
    ("BackgroundJob", "spec.startAfter"),
    ("BackgroundJob", "spec.timeout"),
    ("BackgroundJob", "spec.ttlAfterFinished"),
    ("BackgroundJob", "spec.retry.delays.[]"),
    ("BackgroundJob", "spec.retry.backoff.initial"),
    ("BackgroundJob", "spec.retry.backoff.max"),
    ("RecurringJob", "spec.startingDeadline"),
    ("RecurringJob", "spec.jobTemplate.spec.timeout"),
]


DURATIONS = {"90s": True, "1h30m": True, "1.5h": True, "0": True, "250ms": True, "5 minutes": False,
             "-5s": False, "5": False, "1d": False, "": False, "h": False}  # fmt: skip


@pytest.mark.parametrize(("kind", "path"), DURATION_FIELDS)
def test_duration_fields_reject_malformed_durations(kind: str, path: str) -> None:
    assert format_rule(kind, path)["message"] == models.DURATION_MESSAGE
    assert {value: cel_accepts(kind, path, value) for value in DURATIONS} == DURATIONS


@given(st.text(alphabet="0123456789.nsuµmh -", max_size=12))
def test_admission_accepts_exactly_the_durations_the_operator_parses(text: str) -> None:
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert cel_accepts("BackgroundJob", "spec.timeout", text) is parsed


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_durations_the_operator_writes_pass_admission(value: timedelta) -> None:
    assert cel_accepts("BackgroundJob", "spec.timeout", format_duration(value))


SCHEDULES = {"0 2 * * *": True, "*/5 * * * 1-5": True, "@daily": True, " @hourly ": True,
             "0 2 * *": False, "0 2 * * * *": False, "@sometimes": False,
             "daily": False}  # fmt: skip


def test_schedule_rule() -> None:
    accepted = {value: cel_accepts("RecurringJob", "spec.schedule", value) for value in SCHEDULES}
    assert accepted == SCHEDULES


# ---------------------------------------------------------------- what a person sees for bad input


# What the API server answers (kube-openapi / CEL wording) comes from the keyword checked here.
BAD_INPUT = [
    # kind, path, keyword, value: what a person sees
    ("BackgroundJob", "spec.retry.attempts", "minimum", 0),
    # spec.retry.attempts: Invalid value: -1: ... should be greater than or equal to 0
    ("BackgroundJob", "spec.afterCondition", "enum", ["Succeeded", "Finished"]),
    # spec.afterCondition: Unsupported value: "Whenever": supported values: "Succeeded", ...
    ("BackgroundJob", "spec.template", "required", ["spec"]),
    # spec.template.spec: Required value
    ("BackgroundJob", "spec.template.spec", "required", ["containers"]),
    # spec.template.spec.containers: Required value
    ("BackgroundJob", "spec.template.spec.containers", "minItems", 1),
    # spec.template.spec.containers: Invalid value: 0: ... should have at least 1 items
    ("BackgroundJob", "spec.retry.onExitCodes.[]", "maximum", 255),
    ("JobQueue", "spec.concurrency", "minimum", 0),
    ("RecurringJob", "spec.successfulJobsHistoryLimit", "minimum", 0),
    ("RecurringJob", "spec.misfirePolicy", "enum", ["RunOnce", "RunAll", "Skip"]),
]


@pytest.mark.parametrize(("kind", "path", "keyword", "value"), BAD_INPUT)
def test_bad_input_is_refused_by_the_schema(kind: str, path: str, keyword: str, value: Any) -> None:
    assert at(kind, path)[keyword] == value


@pytest.mark.parametrize(("kind", "path"), DURATION_FIELDS)
def test_duration_fields_refuse_more_than_ten_years(kind: str, path: str) -> None:
    [limit] = [r for r in rules_at(kind, path) if r["message"] == models.MAX_DURATION_MESSAGE]
    # Checked only on a well-formed value, which has the other rule's message otherwise.
    assert limit["rule"] == (
        f"!{format_rule(kind, path)['rule']} || duration(self) <= duration('87648h')"
    )
    assert timedelta(hours=87648) == models.MAX_DURATION


def test_a_malformed_duration_gets_the_duration_message() -> None:
    # spec.timeout: Invalid value: "string": must be a duration such as 90s, 15m, 24h or 1h30m
    rule = format_rule("BackgroundJob", "spec.timeout")
    assert rule["message"] == "must be a duration such as 90s, 15m, 24h or 1h30m"
    assert not cel_accepts("BackgroundJob", "spec.timeout", "5 minutes")


# ---------------------------------------------------------------- the converter itself


class _Union(BaseModel):
    value: int | str


class _Exclusive(BaseModel):
    value: int = Field(gt=0)


@pytest.mark.parametrize(
    ("model", "complaint"), [(_Union, "union"), (_Exclusive, "exclusiveMinimum")]
)
def test_schemas_a_crd_cannot_express_are_refused(model: type[BaseModel], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        crds.openapi_schema(model)
