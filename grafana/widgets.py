"""Panel factories with this project's conventions, and the grid they are laid out on.

Every panel has an Italian title (operators read it) and an English description (the hover
text, for everyone else), a unit and thresholds; the factories make those arguments, not
options to remember.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from grafana.sdk import (
    DATASOURCE,
    EXPRESSIONS,
    bargauge,
    common,
    common_models,
    dashboard,
    dashboard_models,
    expr,
    geomap,
    geomap_models,
    piechart,
    piechart_models,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana.sdk import Query as Target

#: Grid width of a Grafana dashboard.
GRID_WIDTH = 24

#: (value from which it applies, colour); the first step's value is None (-infinity).
Steps = Sequence[tuple[float | None, str]]
OK = "green"
WARN = "orange"
BAD = "red"
INFO = "blue"


@dataclass
class Panel:
    """A panel builder and its size on the grid (width in 24ths, height in rows)."""

    builder: Any
    w: int
    h: int


def thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
    )


def higher_is_worse(warn: float, bad: float) -> Steps:
    return ((None, OK), (warn, WARN), (bad, BAD))


def lower_is_worse(bad: float, warn: float) -> Steps:
    return ((None, BAD), (bad, WARN), (warn, OK))


NEUTRAL: Steps = ((None, INFO),)


def text_colours(colours: dict[str, str]) -> list[dashboard_models.ValueMap]:
    """Colour string values (a status) in tables and state timelines."""
    return value_texts({value: (None, colour) for value, colour in colours.items()})


def value_texts(texts: Mapping[Any, tuple[str | None, str]]) -> list[dashboard_models.ValueMap]:
    """Colour values, and name them where a text is given: ``{value: (text, colour)}`` (a
    device's condition code, shown as words)."""
    return [
        dashboard_models.ValueMap(
            options={
                str(value): dashboard_models.ValueMappingResult(text=name, color=colour, index=i)
                for i, (value, (name, colour)) in enumerate(texts.items())
            }
        )
    ]


def _common(builder: Any, title: str, description: str, targets: Sequence[Any]) -> Any:
    b = builder.title(title).description(description)
    b.datasource(DATASOURCE)
    for t in targets:
        b.with_target(t)
    return b


def stat_panel(
    title: str,
    description: str,
    *targets: Any,
    unit: str = "none",
    steps: Steps = NEUTRAL,
    decimals: int | None = None,
    time_from: str | None = None,
    ranges: Sequence[tuple[float | None, float | None, str]] = (),
    w: int = 6,
    h: int = 4,
) -> Panel:
    """A big number; ``time_from`` fixes its time range (Grafana's panel "relative time":
    ``24h``, ``now/y``) whatever the board's, and ``ranges`` name value ranges
    (``(from, to, text)``, e.g. air-quality bands)."""
    b = _common(stat.Panel(), title, description, targets)
    b.unit(unit).thresholds(thresholds(steps)).graph_mode(
        common_models.BigValueGraphMode.NONE
    ).color_mode(common_models.BigValueColorMode.BACKGROUND).reduce_options(
        common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    ).no_value("0")
    if decimals is not None:
        b.decimals(decimals)
    if time_from is not None:
        b.time_from(time_from)
    if ranges:
        b.mappings(
            [
                dashboard_models.RangeMap(
                    options=dashboard_models.DashboardRangeMapOptions(
                        from_val=low, to=high, result=dashboard_models.ValueMappingResult(
                            text=text, index=i
                        ),
                    )
                )
                for i, (low, high, text) in enumerate(ranges)
            ]
        )  # fmt: skip
    return Panel(b, w, h)


def timeseries_panel(
    title: str,
    description: str,
    *targets: Any,
    unit: str = "none",
    steps: Steps = NEUTRAL,
    bars: bool = False,
    stack: bool = False,
    min_interval: str | None = None,
    w: int = 12,
    h: int = 8,
) -> Panel:
    b = _common(timeseries.Panel(), title, description, targets)
    b.unit(unit).thresholds(thresholds(steps)).fill_opacity(60 if bars else 15).span_nulls(True)
    if steps is not NEUTRAL:
        b.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.LINE)
        )
    if bars:
        b.draw_style(common_models.GraphDrawStyle.BARS)
    if stack:
        b.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    if min_interval:
        b.interval(min_interval)
    return Panel(b, w, h)


def bargauge_panel(
    title: str,
    description: str,
    *targets: Any,
    unit: str = "none",
    steps: Steps = NEUTRAL,
    maximum: float | None = None,
    w: int = 12,
    h: int = 8,
) -> Panel:
    b = _common(bargauge.Panel(), title, description, targets)
    b.unit(unit).thresholds(thresholds(steps)).min(0).orientation(
        common_models.VizOrientation.HORIZONTAL
    ).display_mode(common_models.BarGaugeDisplayMode.GRADIENT).reduce_options(
        common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    )
    if maximum is not None:
        b.max(maximum)
    return Panel(b, w, h)


def table_panel(
    title: str,
    description: str,
    *targets: Any,
    unit: str = "none",
    steps: Steps = NEUTRAL,
    colours: dict[str, str] | None = None,
    w: int = 12,
    h: int = 8,
) -> Panel:
    b = _common(table.Panel(), title, description, targets)
    b.unit(unit).thresholds(thresholds(steps)).filterable(True)
    if colours:
        b.mappings(text_colours(colours)).cell_options(
            common_models.TableColoredBackgroundCellOptions()
        )
    b.with_transformation(
        dashboard_models.DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True}}
        )
    )
    return Panel(b, w, h)


def pie_panel(
    title: str, description: str, *targets: Any, unit: str = "none", w: int = 8, h: int = 8
) -> Panel:
    b = _common(piechart.Panel(), title, description, targets)
    b.unit(unit).pie_type(piechart_models.PieChartType.DONUT).reduce_options(
        common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    )
    return Panel(b, w, h)


def state_timeline_panel(
    title: str,
    description: str,
    *targets: Any,
    colours: dict[str, str],
    w: int = 24,
    h: int = 8,
) -> Panel:
    b = _common(statetimeline.Panel(), title, description, targets)
    b.mappings(text_colours(colours)).show_value(common_models.VisibilityMode.NEVER).merge_values(
        True
    )
    return Panel(b, w, h)


def geomap_panel(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    centre: tuple[float, float],
    zoom: int,
    colour_field: str,
    steps: Steps,
    transformations: Sequence[dashboard_models.DataTransformerConfig] = (),
    texts: dict[int, tuple[str, str]] | None = None,
    w: int = 24,
    h: int = 14,
) -> Panel:
    """Markers at each row's ``lat``/``lon``, coloured by ``colour_field`` through ``steps``;
    ``transformations`` first turn the targets' results into one row per marker."""
    markers = (
        common.MapLayerOptions()
        .type("markers")
        .name("Dispositivi")
        .location(
            common.FrameGeometrySource()
            .mode(common_models.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .tooltip(True)
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": colour_field, "fixed": "dark-green"},
                    "opacity": 0.8,
                    "size": {"fixed": 6, "min": 4, "max": 12},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                },
            }
        )
    )
    b = _common(geomap.Panel(), title, description, targets)
    # the SDK types lat/lon as int (Grafana's schema says int64), but they are degrees: a map
    # centred on whole degrees would miss the city by tens of km, and Grafana takes decimals
    lat, lon = cast(int, centre[0]), cast(int, centre[1])
    b.view(geomap.MapViewConfig().id("coords").lat(lat).lon(lon).zoom(zoom)).basemap(
        common.MapLayerOptions().type("default").name("OpenStreetMap")
    ).layers([markers]).thresholds(thresholds(steps)).color_scheme(
        dashboard.FieldColor().mode(dashboard_models.FieldColorModeId.THRESHOLDS)
    ).tooltip(geomap.TooltipOptions().mode(geomap_models.TooltipMode.DETAILS))
    for t in transformations:
        b.with_transformation(t)
    if texts:
        b.mappings(value_texts(texts))
    return Panel(b, w, h)


def ratio(
    numerator: Target, denominator: Target, ref_id: str = "C", expression: str = "$A / $B"
) -> list[Any]:
    """Two hidden InfluxQL targets and a Grafana math expression over them.

    InfluxQL cannot divide one aggregate by another with a different WHERE, so shares (the
    separate-collection rate, a charger's utilisation) are Grafana server-side expressions.
    """
    numerator.query.hide = True
    denominator.query.hide = True
    math = expr.TypeMath().ref_id(ref_id).expression(expression).datasource(EXPRESSIONS)
    return [numerator, denominator, math]


@dataclass
class Section:
    """A titled row of the board; its panels flow left to right and wrap at the grid width."""

    title: str
    panels: list[Panel]


def lay_out(board: dashboard.Dashboard, sections: Sequence[Section]) -> None:
    """Place sections top to bottom; panels get explicit positions and stable ids."""
    y = 0
    next_id = 1
    for section in sections:
        board.with_row(
            dashboard.Row(section.title)
            .grid_pos(dashboard_models.GridPos(h=1, w=GRID_WIDTH, x=0, y=y))
            .id(next_id)
        )
        next_id += 1
        y += 1
        x, row_h = 0, 0
        for panel in section.panels:
            if panel.w > GRID_WIDTH:
                raise ValueError(f"panel wider than the grid in section {section.title!r}")
            if x + panel.w > GRID_WIDTH:
                x, y, row_h = 0, y + row_h, 0
            panel.builder.grid_pos(dashboard_models.GridPos(h=panel.h, w=panel.w, x=x, y=y)).id(
                next_id
            )
            board.with_panel(panel.builder)
            next_id += 1
            x += panel.w
            row_h = max(row_h, panel.h)
        y += row_h
