"""The outputs of a run: a rich table on the terminal, the JSON document, PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

UNITS = {"msgs_per_s": "/s", "slowest_per_s": "/s", "p50_us": "µs", "p99_us": "µs", "cpu_us": "µs/msg"}
NAMES = {
    "msgs_per_s": "rate",
    "slowest_per_s": "slowest sub",
    "p50_us": "p50",
    "p99_us": "p99",
    "cpu_us": "CPU",
    "lost": "tasks lost (not timed)",
    "duplicates": "tasks duplicated",
}


def fmt(value: float, metric: str) -> str:
    if metric.endswith("_us"):
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    return f"{value:,.0f}"


def spread(s: dict[str, float], metric: str) -> str:
    text = f"{fmt(s['min'], metric)}–{fmt(s['max'], metric)}"
    if "q1" in s:
        text += f" (IQR {fmt(s['q1'], metric)}–{fmt(s['q3'], metric)})"
    return text


def case_rows(case: dict[str, Any]) -> list[list[str]]:
    """Rows of one case: payload, variant (or ratio), metric, median, spread, goal, verdict."""
    out: list[list[str]] = []
    for res in case["results"]:
        labels = {k: v["label"] for k, v in res["variants"].items()}
        for var in res["variants"].values():
            for metric, s in var["summary"].items():
                name = f"{NAMES.get(metric, metric)} {UNITS.get(metric, '')}".strip()
                out.append([res["label"], var["label"], name, fmt(s["median"], metric), spread(s, metric), "", ""])
        for r in res["ratios"]:
            what = f"{labels.get(r['subject'], r['subject'])} / {labels.get(r['baseline'], r['baseline'])}"
            name = f"ratio of {NAMES.get(r['metric'], r['metric'])}"
            span = f"{r['min']:.2f}–{r['max']:.2f}"
            out.append([res["label"], what, name, f"{r['median']:.2f}×", span, r["goal"], r["verdict"]])
    if case.get("error"):
        out.append(["", "FAILED", "", "", case["error"].splitlines()[0][:120], "", "ERROR"])
    return out


HEADER = ["payload", "variant", "metric", "median", "spread", "goal", "verdict"]


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    console.print(f"[bold]make bench[/bold] — {doc['meta']['summary']}")
    for case in doc["cases"]:
        table = Table(
            title=f"{case['title']}  [{case['seconds']} s, {case.get('rounds', '?')} rounds]",
            title_justify="left",
            caption=case["what"],
        )
        for h in HEADER:
            table.add_column(h, justify="right" if h in ("median", "spread") else "left", no_wrap=h != "variant")
        for row in case_rows(case):
            style = {"PASS": "green", "SHORT": "yellow", "ERROR": "red"}.get(row[-1])
            table.add_row(*row, style=style)
        console.print(table)


def markdown(doc: dict[str, Any]) -> str:
    """The same tables as Markdown, for BENCHMARKS.md."""
    parts = []
    for case in doc["cases"]:
        lines = [f"**{case['title']}** — {case['what']}", "", "| " + " | ".join(HEADER) + " |"]
        lines.append("|" + "---|" * len(HEADER))
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in case_rows(case)]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def plot(doc: dict[str, Any], outdir: Path) -> list[Path]:
    """rates.png (medians with min-max bars), latency.png (p50/p99), ratios.png (paired ratios vs goals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def bars(metrics: tuple[str, ...], filename: str, xlabel: str) -> None:
        groups = []
        for case in doc["cases"]:
            for res in case["results"]:
                items = [
                    (var["label"], m, var["summary"][m])
                    for var in res["variants"].values()
                    for m in metrics
                    if m in var["summary"]
                ]
                if items:
                    groups.append((f"{case['title']} — {res['label']}", items))
        if not groups:
            return
        height = sum(len(items) for _, items in groups) * 0.32 + len(groups) * 0.7 + 0.5
        fig, axes = plt.subplots(
            len(groups), 1, figsize=(10, height), gridspec_kw={"height_ratios": [len(i) for _, i in groups]}
        )
        axes = list(axes) if len(groups) > 1 else [axes]
        for ax, (title, items) in zip(axes, groups, strict=True):
            labels = [lbl if len(metrics) == 1 else f"{lbl} {NAMES[m]}" for lbl, m, _ in items]
            med = [s["median"] for _, _, s in items]
            err = [[s["median"] - s["min"] for _, _, s in items], [s["max"] - s["median"] for _, _, s in items]]
            ax.barh(range(len(items)), med, xerr=err, color="#4c72b0", capsize=3)
            ax.set_yticks(range(len(items)), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_title(title, fontsize=9, loc="left")
            ax.tick_params(axis="x", labelsize=8)
        axes[-1].set_xlabel(xlabel, fontsize=9)
        fig.tight_layout()
        path = outdir / filename
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    bars(("msgs_per_s",), "rates.png", "messages per second (median; bars: min–max over repeats)")
    bars(("p50_us", "p99_us"), "latency.png", "round trip, µs (median; bars: min–max over repeats)")

    ratios = []
    for case in doc["cases"]:
        for res in case["results"]:
            labels = {k: v["label"] for k, v in res["variants"].items()}
            for r in res["ratios"]:
                metric = NAMES.get(r["metric"], r["metric"])
                name = (
                    f"{case['id']} {res['label']}, {metric}:\n{labels.get(r['subject'])} / {labels.get(r['baseline'])}"
                )
                ratios.append((name, r))
    if ratios:
        fig, ax = plt.subplots(figsize=(12, 0.45 * len(ratios) + 1.2))
        for i, (_name, r) in enumerate(ratios):
            color = {"PASS": "#55a868", "SHORT": "#dd8452"}.get(r["verdict"], "#8c8c8c")
            ax.barh(i, r["median"], xerr=[[r["median"] - r["min"]], [r["max"] - r["median"]]], color=color, capsize=3)
            if r["goal"]:
                factor = float(r["goal"].split()[1])
                ax.plot([factor, factor], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.set_yticks(range(len(ratios)), [n for n, _ in ratios], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="#999999", linewidth=0.8, linestyle=":")
        ax.set_xlabel("paired ratio subject / baseline (median, min–max); black tick: goal", fontsize=9)
        ax.set_title("Ratios against baselines (green PASS, orange SHORT, grey no goal)", fontsize=9, loc="left")
        fig.tight_layout()
        path = outdir / "ratios.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":  # python -m bench.report bench-results/bench.json: the Markdown tables
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
