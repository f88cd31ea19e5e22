"""The scrape: the counters from Redis and the gauges, as prometheus_client families in the text format.

A fresh registry per scrape with one collector: nothing is kept in this process between scrapes,
so every web process answers the same.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mailadmin.counters import FAMILIES, Family
from mailadmin.counters.tally import FIELD_SEPARATOR, HISTOGRAM_INF_FIELD, HISTOGRAM_SUM_FIELD
from mailadmin.extensions import get_redis
from mailadmin.metrics.gauges import read_gauges
from mailadmin.models.types import utcnow

CONTENT_TYPE = CONTENT_TYPE_LATEST


def counter_family(family: Family, values: dict[str, str]) -> Metric:
    """A counter family: its known label values at 0, then what Redis holds."""
    metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
    fields = {FIELD_SEPARATOR.join(known): 0.0 for known in family.known} or ({"": 0.0} if not family.labels else {})
    fields.update({field: float(value) for field, value in values.items()})
    for field, value in sorted(fields.items()):
        labels = field.split(FIELD_SEPARATOR) if family.labels else []
        if len(labels) == len(family.labels):
            metric.add_metric(labels, value)
    return metric


def histogram_family(family: Family, values: dict[str, str]) -> Metric:
    """A histogram from its per-bucket counts (cumulated here), its sum and count."""
    metric = HistogramMetricFamily(family.name, family.help)
    cumulative, buckets = 0.0, []
    for bound in family.buckets:
        cumulative += float(values.get(repr(bound), 0))
        buckets.append((repr(bound), cumulative))
    cumulative += float(values.get(HISTOGRAM_INF_FIELD, 0))
    buckets.append(("+Inf", cumulative))
    metric.add_metric([], buckets, sum_value=float(values.get(HISTOGRAM_SUM_FIELD, 0)))
    return metric


class _Scrape:
    """The one collector of a scrape."""

    def collect(self) -> Iterator[Metric]:
        readings, stored, database_up, redis_up = read_gauges(get_redis(), utcnow())
        for family in FAMILIES if redis_up else ():
            values = stored.get(family, {})
            yield histogram_family(family, values) if family.is_histogram else counter_family(family, values)
        for name, help_text, labels, samples in readings:
            gauge = GaugeMetricFamily(name, help_text, labels=labels)
            for label_values, value in samples:
                gauge.add_metric(list(label_values), value)
            yield gauge
        for name, up in (("mailadmin_database_up", database_up), ("mailadmin_redis_up", redis_up)):
            yield GaugeMetricFamily(name, f"1 when the scrape could read {name.split('_')[1]}.", value=1 if up else 0)


def render_metrics() -> bytes:
    """The text exposition of every metric, read now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape())
    return generate_latest(registry)
