"""Reading a `/metrics` scrape (Prometheus text format) as tests and benchmarks need it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` (with its suffix: `smsgw_sends_total`), with its labels."""
    return [
        (dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def per_modem(text: str, name: str, **labels: str) -> dict[str, float]:
    """The sample `name` by its `modem` label, among those carrying `labels` too."""
    return {
        got["modem"]: value
        for got, value in samples(text, name)
        if "modem" in got and all(got.get(k) == v for k, v in labels.items())
    }
