"""The versioned JSON report; it validates against schemas/report.schema.json."""
from __future__ import annotations

import json
from typing import Any

from gate.report.model import Report, to_jsonable


def report_dict(report: Report) -> dict[str, Any]:
    data = to_jsonable(report)
    for check in data["checks"]:
        check.pop("power", None)        # carried once, as the top-level `power` list
    data["$schema"] = "https://github.com/gate-dev/gate/schemas/report.schema.json"
    return data


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, sort_keys=False, allow_nan=False) + "\n"


def validate_report(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if the report does not fit its published schema."""
    import jsonschema

    from gate.config import report_schema

    jsonschema.Draft202012Validator(report_schema()).validate(data)
