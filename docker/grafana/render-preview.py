#!/usr/bin/env python3
"""Draws docker/grafana/keygate.json's panels from a Prometheus, as a PNG.

Grafana is not installable on the machine keygate is developed on, so the
README's picture of the dashboard is drawn by this script instead: it reads
the dashboard JSON, runs each panel's own PromQL (with $__rate_interval and
$instance filled in) through Prometheus's query_range API, and plots the
results in the dashboard's grid layout with matplotlib. Same queries, same
layout; not Grafana's rendering.

    python3 docker/grafana/render-preview.py PROMETHEUS_URL START END OUT.png

START and END are Unix times. Needs Debian's python3-matplotlib (run it
with /usr/bin/python3 if another python3 comes first on PATH).
"""
import datetime
import json
import os
import sys
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

RATE_INTERVAL = "30s"
UNITS = {"reqps": "req/s", "s": "s", "percentunit": "", "short": ""}


def query_range(base, expr, start, end, step):
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", ".*")
    url = base + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step}
    )
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt or "{{instance}}"
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def main():
    base, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "keygate.json")) as f:
        dashboard = json.load(f)
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(24, rows * 0.55))
    grid = fig.add_gridspec(rows, 24, hspace=1.2, wspace=1.6, top=0.96, bottom=0.02)
    step = max(2, int((end - start) / 300))
    for panel in panels:
        pos = panel["gridPos"]
        ax = fig.add_subplot(grid[pos["y"]: pos["y"] + pos["h"], pos["x"]: pos["x"] + pos["w"]])
        if panel["type"] == "row":
            ax.axis("off")
            ax.text(0, 0.5, panel["title"], fontsize=13, weight="bold", va="center",
                    transform=ax.transAxes)
            continue
        ax.set_title(panel["title"], fontsize=10, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        series = []
        for target in panel["targets"]:
            for result in query_range(base, target["expr"], start, end, step):
                points = [(float(t), float(v)) for t, v in result["values"]]
                series.append((legend(target.get("legendFormat"), result["metric"]), points))
        if panel["type"] == "stat":
            ax.axis("off")
            if series and series[0][1]:
                value = series[0][1][-1][1]
                text = f"{value:.1%}" if unit == "percentunit" else f"{value:,.4g} {UNITS.get(unit, '')}"
            else:
                text = "no data"
            ax.text(0.5, 0.35, text, ha="center", va="center", fontsize=20, transform=ax.transAxes)
            continue
        if not series:
            ax.text(0.5, 0.5, "no data (not configured in this run)", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for name, points in series:
            times = [datetime.datetime.fromtimestamp(t) for t, _ in points]
            ax.plot(times, [v for _, v in points], label=name, linewidth=1)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.tick_params(labelsize=7)
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=7)
        ax.legend(fontsize=6, loc="upper left", ncol=2)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "keygate dashboard (docker/grafana/keygate.json): its queries run on Prometheus "
        "scraping a live keygate, drawn by render-preview.py, not Grafana",
        fontsize=12,
    )
    fig.savefig(out, dpi=60, bbox_inches="tight")
    print(f"{out}: {len(panels)} panels, {datetime.datetime.fromtimestamp(start)} to "
          f"{datetime.datetime.fromtimestamp(end)}")


if __name__ == "__main__":
    main()
