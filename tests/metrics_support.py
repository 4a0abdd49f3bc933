"""Reading a /metrics document the way Prometheus does: with prometheus_client's own parser."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from prometheus_client.core import Metric


def families(text: str) -> dict[str, Metric]:
    """Every family of the document by name; a name seen twice fails the test."""
    found: dict[str, Metric] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in found, f"family {family.name} appears twice"
        found[family.name] = family
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The one sample ``name`` with exactly ``labels`` (fails if there is none)."""
    matches = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def label_sets(text: str, name: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets of every sample called ``name``."""
    return {
        tuple(sorted(sample.labels.items()))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }
