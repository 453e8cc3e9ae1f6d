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
    from gate.config import report_schema
    from gate.schema_subset import Unsupported, is_valid

    schema = report_schema()
    try:
        if is_valid(data, schema):
            return                      # jsonschema is imported only to say what does not fit
    except Unsupported:
        pass
    import jsonschema

    jsonschema.Draft202012Validator(schema).validate(data)
