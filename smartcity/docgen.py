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


def _variants(annotated: Any) -> tuple[type[BaseModel], ...]:
    """The models of an ``Annotated[A | B, Field(discriminator=...)]`` (or of a single model)."""
    inner = get_args(annotated)[0]
    return get_args(inner) or (inner,)


def _nested_tables(model: type[BaseModel]) -> list[str]:
    out: list[str] = []
    for info in model.model_fields.values():
        if get_origin(info.annotation) is list:
            sub = get_args(info.annotation)[0]
            out += [f"Each `{sub.__name__}`:", "", *model_table(sub), ""]
    return out


def _tagged(models: tuple[type[BaseModel], ...], what: str, tag: str) -> list[str]:
    out: list[str] = []
    for model in models:
        name = get_args(model.model_fields[tag].annotation)[0]
        out += [
            f"{what} `{name}` (`{model.__name__}`): {(model.__doc__ or '').strip()}",
            "",
            *model_table(model),
            "",
            *_nested_tables(model),
        ]
    return out


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
            *_nested_tables(device.reading_model),
            *_tagged(_variants(device.event_model), "Event", "kind"),
            *_tagged(_variants(device.command_model), "Command", "action"),
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
