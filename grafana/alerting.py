"""Alert rules: each device type's, plus the platform's (device offline, ingest stalled).

Rules are built once with the SDK in the alerting HTTP API's shape; the provisioning file is
the same rules in Grafana's file format, so what ``push`` uploads and what compose provisions
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from grafana.boards import SERVICES, Folder, alerts, pipeline
from grafana.panels import PANELS, AlertRule
from grafana.queries import INGEST_STATS, INGEST_STATS_F, STATUS, STATUS_F, TIME_FILTER
from grafana.sdk import DATASOURCE_UID, EXPRESSIONS, alerting, alerting_models, expr, influxql
from grafana.sdk import to_json as sdk_json

GROUP = "cremona"
#: Seconds between evaluations of the group.
INTERVAL_S = 60
ORG_ID = 1


def platform_rules() -> list[AlertRule]:
    return [
        AlertRule(
            uid="cremona-device-offline",
            title="Dispositivo non in linea",
            summary="{{ $labels.device_type }} {{ $labels.device_id }} in {{ $labels.zone }} "
            "is offline (its Last Will fired): check power and network on site.",
            # status is sent on connect and by the Last Will, so the last one ever is the state
            query=f"SELECT last({STATUS_F.online}) FROM {STATUS} "
            'GROUP BY "device_id", "device_type", "zone"',
            window_s=600,
            reducer="last",
            op="lt",
            threshold=1,
            severity="warning",
            pending="5m",
            dashboard_uid=alerts.UID,
        ),
        AlertRule(
            uid="cremona-ingest-stalled",
            title="Ingestione ferma",
            summary="The ingesters received no message in 5 minutes, or stopped reporting: "
            "check `smartcity ingest`, the broker and InfluxDB.",
            query=f'SELECT sum("m") FROM (SELECT spread({INGEST_STATS_F.messages_received}) AS "m" '
            f'FROM {INGEST_STATS} WHERE {TIME_FILTER} GROUP BY "worker")',
            window_s=300,
            reducer="last",
            op="lt",
            threshold=1,
            severity="critical",
            # no health figures at all means no ingester is running
            no_data="Alerting",
            dashboard_uid=pipeline.UID,
        ),
    ]


def rules() -> list[AlertRule]:
    return [*(r for p in PANELS.values() for r in p.alerts()), *platform_rules()]


def rule_builder(rule: AlertRule, folder: Folder) -> alerting.Rule:
    reduce = (
        expr.TypeReduce()
        .ref_id("B")
        .datasource(EXPRESSIONS)
        .expression("A")
        .reducer(rule.reducer)
        .settings(expr.ExprTypeReduceSettings().mode("dropNN"))
    )
    threshold = (
        expr.TypeThreshold()
        .ref_id("C")
        .datasource(EXPRESSIONS)
        .expression("B")
        .conditions(
            [
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator()
                    .type(rule.op)
                    .params([rule.threshold])
                )
            ]
        )
    )
    window = alerting_models.RelativeTimeRange(from_val=rule.window_s, to=0)
    annotations = {"summary": rule.summary}
    if rule.dashboard_uid:
        annotations["__dashboardUid__"] = rule.dashboard_uid
    return (
        alerting.Rule(rule.title)
        .uid(rule.uid)
        .org_id(ORG_ID)
        .folder_uid(folder.uid)
        .rule_group(GROUP)
        .condition("C")
        .queries(
            [
                alerting.Query("A")
                .datasource_uid(DATASOURCE_UID)
                .relative_time_range(window)
                .model(influxql(rule.query, "A")),
                alerting.Query("B").datasource_uid("__expr__").model(reduce),
                alerting.Query("C").datasource_uid("__expr__").model(threshold),
            ]
        )
        .for_val(rule.pending)
        .no_data_state(rule.no_data)
        .exec_err_state("Error")
        .labels({"severity": rule.severity, "city": "cremona", **rule.labels})
        .annotations(annotations)
    )


def api_rules(folder: Folder = SERVICES) -> list[dict[str, Any]]:
    """The rules as ``POST /api/v1/provisioning/alert-rules`` takes them."""
    return [sdk_json(rule_builder(r, folder).build()) for r in rules()]


def api_group(folder: Folder = SERVICES) -> dict[str, Any]:
    """The group as ``PUT /api/v1/provisioning/folder/{uid}/rule-groups/{group}`` takes it."""
    group = (
        alerting.RuleGroup(GROUP)
        .folder_uid(folder.uid)
        .interval(INTERVAL_S)
        .rules([rule_builder(r, folder) for r in rules()])
    )
    data: dict[str, Any] = sdk_json(group.build())
    return data


#: Keys of an API rule that the provisioning file carries on the group instead.
_GROUP_KEYS = ("folderUID", "ruleGroup", "orgID")


def provisioning_file(folder: Folder = SERVICES) -> dict[str, Any]:
    """The same group in Grafana's alerting file-provisioning format."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG_ID,
                "name": GROUP,
                "folder": folder.title,
                "interval": f"{INTERVAL_S}s",
                "rules": [
                    {k: v for k, v in rule.items() if k not in _GROUP_KEYS}
                    for rule in api_rules(folder)
                ],
            }
        ],
    }
