"""docs/api-reference.md: generated from the CRDs, complete, and never stale."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from stoker.api import crds, models, reference

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "api-reference.md"
PACKAGE = ROOT / "operator" / "stoker"


# ---------------------------------------------------------------- staleness


def test_committed_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == reference.render(), (
        "docs/api-reference.md is stale: run `make api-docs`"
    )


def test_check_fails_on_a_stale_or_missing_page_and_passes_after_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "docs" / "api-reference.md"
    assert reference.main(["check", str(page)]) == 1
    assert reference.main(["write", str(page)]) == 0
    assert reference.main(["check", str(page)]) == 0
    page.write_text(page.read_text().replace("bgj", "job"))
    capsys.readouterr()
    assert reference.main(["check", str(page)]) == 1
    assert "is stale: run `python -m stoker.api.reference write" in capsys.readouterr().err


def test_print_is_the_default_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main([]) == 0
    assert capsys.readouterr().out == reference.render()


# ---------------------------------------------------------------- every field, as admission sees it


def crd_paths(node: dict[str, Any], path: str) -> Iterator[str]:
    """Every declared field below node, in the page's path notation."""
    for name, child in node.get("properties", {}).items():
        if name == "kopf":
            continue
        child_path = f"{path}.{name}"
        yield child_path
        yield from crd_paths(child, child_path)
        if child.get("type") == "array":
            yield from crd_paths(child["items"], f"{child_path}[]")


def table_rows(section: str) -> dict[str, list[str]]:
    """Field path -> the cells of its row, for the tables of one kind's section."""
    found: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].startswith(("`spec", "`status")):
            found[cells[0].strip("`")] = cells
    return found


def kind_section(kind: str) -> str:
    page = reference.render()
    start = page.index(f"\n## {kind}\n")
    end = page.find("\n## ", start + 1)
    return page[start:end]


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda kind: kind.kind)
def test_every_field_of_the_crd_has_a_row(kind: crds.CrdKind) -> None:
    schema = crds.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    expected = [
        *crd_paths(schema["properties"]["spec"], "spec"),
        *crd_paths(schema["properties"]["status"], "status"),
    ]
    assert list(table_rows(kind_section(kind.kind))) == expected


def test_rows_carry_type_default_description_and_validation() -> None:
    job = table_rows(kind_section("BackgroundJob"))
    _, type_, default, description, validation = job["spec.retry.attempts"]
    assert (type_, default) == ("integer", "`3`")
    assert description == "Retries after the first failed attempt; 0 = never retry."
    assert validation == "min 0, max 1000"
    assert job["spec.queue"][2] == '`"default"` (set at admission)'
    assert job["spec.timeout"][1:3] == ["duration", ""]
    assert job["spec.retry.backoff.initial"][1:3] == ["duration", '`"15s"`']
    assert job["spec.startAt"][1] == "timestamp"
    assert job["spec.priority"][1] == "int32"
    assert job["spec.afterCondition"][4] == "one of `Succeeded`, `Finished`"
    assert job["spec.template.spec.containers"][4] == "**required**, min items 1"
    assert job["spec.template.metadata.labels"][1] == "map[string]string"
    assert job["spec.task.args"][1] == "object (free-form)"
    # Status tables have no Default column: the operator writes every value.
    assert len(job["status.phase"]) == 4
    assert "one of `Awaiting`, `Scheduled`" in job["status.phase"][3]
    recurring = table_rows(kind_section("RecurringJob"))
    assert "“schedule must have 5 fields" in recurring["spec.schedule"][4]
    assert "“set startAt or startAfter, not both”" in recurring["spec.jobTemplate.spec"][4]


def test_rules_beyond_single_fields_are_stated() -> None:
    job = kind_section("BackgroundJob")
    assert "Rule on the whole spec: “set startAt or startAfter, not both”." in job
    assert "Rule on `metadata.name`: “name must be at most 63 characters" in job
    assert "Rule on `metadata.name`: “name must be at most 52 characters" in kind_section(
        "RecurringJob"
    )


def test_a_pipe_in_a_cell_does_not_split_the_row() -> None:
    assert reference._cell("a|b") == "a\\|b"
    assert reference._cell("two\n  lines") == "two lines"


# ---------------------------------------------------------------- phases, reasons, annotations


def test_every_phase_has_a_meaning_and_its_reasons() -> None:
    phases = list(get_args(models.Phase))
    assert list(reference.PHASES) == phases
    assert list(reference.JOB_REASONS) == phases
    rows = kind_section("BackgroundJob")
    for phase in phases:
        assert f"| `{phase}` | {reference.PHASES[phase]} |" in rows


# Calls whose argument at this position (or keyword `reason`) is a reason the operator writes.
REASON_ARGUMENT = {
    "_set": 2,
    "failed": 1,
    "waiting": 1,
    "_fail": 2,
    "Event": 1,
    "set_condition": 3,
    "_valid": 2,
    "_wait_and_retry": 1,
    "post_event": 2,
}


def strings(node: ast.AST) -> set[str]:
    """The string values an expression can take: `a or "X"`, `"X" if c else "Y"`, `Literal[...]`
    (not strings it only compares with or passes on, as in `status.get("reason")`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    parts: list[ast.expr] = []
    if isinstance(node, ast.BoolOp):
        parts = node.values
    elif isinstance(node, ast.IfExp):
        parts = [node.body, node.orelse]
    elif isinstance(node, ast.Subscript):
        parts = [node.slice]
    elif isinstance(node, ast.Tuple):
        parts = node.elts
    return {value for part in parts for value in strings(part)}


def reasons_in_the_operator() -> set[str]:
    """Every reason string the operator's source can put into a status, condition or Event."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                index = REASON_ARGUMENT.get(name)
                if index is not None and len(node.args) > index:
                    found |= strings(node.args[index])
                for keyword in node.keywords:
                    if keyword.arg == "reason":
                        found |= strings(keyword.value)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "reason" for t in node.targets
            ):
                found |= strings(node.value)
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.endswith("Reason")
            ):
                found |= strings(node.value)  # WaitReason = Literal[...], StopReason = ...
    return found


def documented_reasons() -> set[str]:
    listed = [
        *(r for phase in reference.JOB_REASONS.values() for r in phase),
        *reference.ATTEMPT_REASONS,
        *(r for kind in reference.CONDITIONS.values() for _, _, rs in kind for r in rs),
        *(r for kind in reference.EVENTS.values() for r in kind),
    ]
    return {name for r in listed for name in r.name.split(", ")}


def test_the_scan_finds_reasons_of_every_origin() -> None:
    found = reasons_in_the_operator()
    # status.reason, a condition's, an Event's, a Literal type's, an attempt's, a fallback's
    assert {"Delayed", "Dispatching", "CatchUpCapped", "QueueFull", "NonRetryableExitCode"} <= found
    assert {"PodLost", "AttemptsExhausted", "Error"} <= found


# Reasons Kubernetes writes into a pod's status, which the operator copies into attempts[].
FROM_THE_POD = {"DeadlineExceeded"}


def test_every_reason_the_operator_writes_is_documented_and_no_other() -> None:
    found, documented = reasons_in_the_operator() | FROM_THE_POD, documented_reasons()
    assert found - documented == set(), "add these to stoker.api.reference"
    assert documented - found == set(), "the operator no longer writes these"


def test_every_annotation_and_label_constant_is_documented() -> None:
    page = reference.render()
    constants = {
        name: value
        for name, value in vars(models).items()
        if name.startswith(("ANNOTATION_", "LABEL_", "ENV_")) and isinstance(value, str)
        and name != "ADMISSION_DEFAULT"
    }  # fmt: skip
    assert len(constants) >= 10
    for name, value in constants.items():
        assert f"| `{value}` |" in page, name


# ---------------------------------------------------------------- the guides' manifests


SPEC_MODELS: dict[str, type[BaseModel]] = {
    "BackgroundJob": models.BackgroundJobSpec,
    "RecurringJob": models.RecurringJobSpec,
    "JobQueue": models.JobQueueSpec,
}
NAME_MAX = {"BackgroundJob": models.JOB_NAME_MAX, "RecurringJob": models.RECURRING_NAME_MAX}


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for guide in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", guide.read_text(), flags=re.DOTALL):
            for doc in yaml.safe_load_all(block):
                if isinstance(doc, dict) and doc.get("apiVersion") == models.API_VERSION:
                    yield guide.name, doc


def test_the_guides_show_manifests_of_every_kind() -> None:
    assert {doc["kind"] for _, doc in manifests()} == set(SPEC_MODELS)


@pytest.mark.parametrize(
    ("guide", "doc"), list(manifests()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_guides_manifests_are_valid(guide: str, doc: dict[str, Any]) -> None:
    SPEC_MODELS[doc["kind"]].model_validate(doc["spec"])
    name = doc["metadata"].get("name") or doc["metadata"]["generateName"] + "x" * 5
    assert len(name) <= NAME_MAX.get(doc["kind"], 253)


def test_the_readme_points_at_the_reference_and_lists_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../shared/" not in readme, "the contract users read is in the repository"
    for guide in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{guide.name})" in readme, guide.name
