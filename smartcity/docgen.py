"""Writes the device tables of ``docs/protocol.md`` from the models, so they never drift.

``python -m smartcity.docgen`` rewrites the part between the GENERATED markers; a test fails
when the committed document differs from what the models say.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from smartcity.devices import DEVICE_TYPES

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED: device types (python -m smartcity.docgen) -->"
END = "<!-- END GENERATED -->"


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def _range(info: Any) -> str:
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    return "" if lo is None and hi is None else f"{lo} … {hi}"


def model_table(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | unit | range | meaning |", "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        unit = (
            (info.json_schema_extra or {}).get("unit", "")
            if isinstance(info.json_schema_extra, dict)
            else ""
        )
        desc = (info.description or "").replace("|", "\\|")
        rows.append(
            f"| `{name}` | {_type_name(info.annotation)} | {unit} | {_range(info)} | {desc} |"
        )
    return rows


def generate() -> str:
    out = [BEGIN, ""]
    for device in DEVICE_TYPES.values():
        out += [
            f"### `{device.name}` — {device.title_en} (FIWARE `{device.fiware_type}`)",
            "",
            f"Reports every {device.report_interval_s:.0f} s. Measurement `{device.measurement()}`;"
            f" events in `{device.event_measurement()}`.",
            "",
            f"Reading (`{device.reading_model.__name__}`):",
            "",
            *model_table(device.reading_model),
            "",
        ]
        nested = {
            get_args(i.annotation)[0]
            for i in device.reading_model.model_fields.values()
            if get_origin(i.annotation) is list
        }
        for sub in nested:
            out += [f"Each `{sub.__name__}`:", "", *model_table(sub), ""]
        events = get_args(get_args(device.event_model)[0]) or (get_args(device.event_model)[0],)
        for event in events:
            out += [
                f"Event `{event.model_fields['kind'].annotation.__args__[0]}` "
                f"(`{event.__name__}`): {(event.__doc__ or '').strip()}",
                "",
                *model_table(event),
                "",
            ]
    out.append(END)
    return "\n".join(out)


def render(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + generate() + tail


def main() -> int:
    DOC.write_text(render(DOC.read_text()))
    print(f"updated {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
