"""The Grafana dashboard is code: it parses, and every hydralm series it plots is one the serving
code defines (a renamed metric would otherwise leave an empty panel nobody notices)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "hydralm-dashboard.json"
SOURCES = [REPO / "serving" / "metrics.py", REPO / "serving" / "scorer_metrics.py"]
# Ray's exporter prefixes `ray_`; counters gain `_total`, histograms `_bucket`/`_sum`/`_count`.
SERIES = re.compile(r"\bray_(hydralm_[a-z_]+?)(?:_total|_bucket|_sum|_count)?\b")


def _defined_names() -> set[str]:
    names: set[str] = set()
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r'"(hydralm_[a-z_]+)"', text))
        # f"hydralm_generator_{name}" over a literal list of names
        for prefix in re.findall(r'f"(hydralm_[a-z_]+)_\{name\}"', text):
            block = text[text.index(f'f"{prefix}_{{name}}"'):]
            names.update(f"{prefix}_{n}" for n in re.findall(r'\("([a-z_]+)", "', block[:600]))
    return names


def test_dashboard_parses_with_unique_panels():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in dash["panels"])


def test_every_plotted_hydralm_series_is_defined():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    defined = _defined_names()
    assert {"hydralm_http_requests", "hydralm_stage_latency_ms",
            "hydralm_generator_retries"} <= defined
    plotted = {m for p in dash["panels"] for t in p["targets"] for m in SERIES.findall(t["expr"])}
    assert plotted, "the dashboard plots no hydralm series"
    assert plotted <= defined, f"plotted but never defined: {sorted(plotted - defined)}"
