"""A drill report as one self-contained HTML page: verdict first, a row per target, trend charts, details.

Pure: a verified report in, a string out.  No script, no style sheet, font or image from
the network: the charts are inline SVG, so the page opens the same on an air-gapped
auditor's laptop.  Every value is escaped; error texts come from providers.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from coldvault.repo.report import Report, figures
from coldvault.units import format_size

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.verdict{font-size:1.6rem;font-weight:700;padding:.6rem 1rem;border-radius:.4rem;display:inline-block}
.pass{background:#e3f5e1;color:#1b5e20}.fail{background:#fde2e1;color:#b71c1c}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:13px ui-monospace,monospace}pre{background:#f6f6f6;padding:.6rem;overflow:auto}
.muted{color:#666}svg text{font:11px system-ui,sans-serif;fill:#444}
"""


def render_page(report: Report) -> str:
    body = report.body
    verdict = str(body.get("verdict", "?"))
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>coldvault drill {report.sequence}: {escape(verdict)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>coldvault restore drill {report.sequence}</h1>",
        f'<p><span class="verdict {"pass" if verdict == "pass" else "fail"}">{escape(verdict.upper())}</span></p>',
        f"<p class=muted>{_text(body.get('created'))} on {_text(body.get('host'))}, coldvault"
        f" {_text(body.get('tool_version'))}; repository {_text(body.get('repository_id'))}; seed"
        f" {_text(body.get('seed'))}<br>report id <code>{report.id}</code>, previous"
        f" <code>{_text(report.previous or 'none (first report)')}</code>, signed by key <code>{report.key_id}</code>"
        " (verify offline: <code>coldvault report verify FILE --public-key KEY</code>)</p>",
    ]
    parts += _problems(body)
    parts += _targets_table(body)
    parts += _sources_table(body)
    parts += _full(body)
    parts += _charts(body)
    parts += [
        "<h2>Samples</h2>",
        "<p class=muted>Byte ranges read back, files named by their position among the snapshot's files.</p>",
        f"<pre>{escape(json.dumps(_samples(body), indent=1, sort_keys=True))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _text(value: object) -> str:
    return escape(str(value)) if value is not None else "—"


def _problems(body: dict[str, Any]) -> list[str]:
    problems = list(body.get("errors") or [])
    for target in body.get("targets") or []:
        problems += [f"{target.get('name')}: {p}" for p in target.get("errors", []) + target.get("lock_violations", [])]
    full = body.get("full") or {}
    problems += [f"full restore: {p}" for p in full.get("errors", [])]
    if not problems:
        return []
    return ["<h2>Problems</h2><ul>", *(f"<li>{escape(str(p))}</li>" for p in problems), "</ul>"]


def _targets_table(body: dict[str, Any]) -> list[str]:
    rows = [
        "<h2>Targets</h2><table><tr><th>target</th><th>verdict</th><th>samples</th><th>read</th>"
        "<th>first byte</th><th>throughput</th><th>warm-up</th><th>full restore (est.)</th><th>locks</th></tr>"
    ]
    for t in body.get("targets") or []:
        locks = f"{t.get('locks_checked', 0)} checked, {len(t.get('lock_violations', []))} violations"
        rows.append(
            f"<tr><td>{_text(t.get('name'))}</td><td class={_cls(t.get('verdict'))}>{_text(t.get('verdict'))}</td>"
            f"<td class=n>{len(t.get('samples', []))}</td><td class=n>{_size(t.get('bytes'))}</td>"
            f"<td class=n>{_seconds(t.get('time_to_first_byte_s'))}</td>"
            f"<td class=n>{_size(t.get('throughput_bytes_per_s'))}/s</td>"
            f"<td class=n>{_seconds(t.get('warmup_s'))}</td><td class=n>{_seconds(t.get('rto_estimate_s'))}</td>"
            f"<td>{escape(locks)}</td></tr>"
        )
    return [*rows, "</table>"]


def _sources_table(body: dict[str, Any]) -> list[str]:
    rows = [
        f"<h2>Recovery points</h2><p class=muted>The newest snapshot of each source restored on at least"
        f" {_text(body.get('min_targets'))} targets, and its age when the drill ran.</p>"
        "<table><tr><th>source</th><th>newest verified snapshot</th><th>taken</th><th>age (RPO)</th></tr>"
    ]
    for s in body.get("sources") or []:
        snapshot = s.get("newest_verified")
        rows.append(
            f"<tr><td>{_text(s.get('source'))}</td><td><code>{_text(snapshot[:12] if snapshot else None)}</code></td>"
            f"<td>{_text(s.get('time'))}</td><td class=n>{_seconds(s.get('rpo_s'))}</td></tr>"
        )
    return [*rows, "</table>"]


def _full(body: dict[str, Any]) -> list[str]:
    full = body.get("full")
    if not full:
        return []
    check = full.get("check")
    parts = [
        "<h2>Full restore</h2>",
        f"<p>Snapshot <code>{_text(str(full.get('snapshot'))[:12])}</code> of {_text(full.get('source'))} from"
        f" {_text(full.get('target'))}: <span class={_cls(full.get('verdict'))}>{_text(full.get('verdict'))}</span>,"
        f" {_text(full.get('files'))} file{'' if full.get('files') == 1 else 's'}, {_size(full.get('bytes'))}"
        f" in {_seconds(full.get('duration_s'))}</p>",
    ]
    if check:
        parts += [
            f"<p>Check <code>{escape(' '.join(check.get('command', [])))}</code> exited"
            f" {_text(check.get('exit_code'))} after {_seconds(check.get('duration_s'))}:</p>",
            f"<pre>{escape(chr(10).join(check.get('output_tail', [])))}</pre>",
        ]
    return parts


def _charts(body: dict[str, Any]) -> list[str]:
    """Throughput per target and recovery point per source over the earlier drills and this one."""
    points = [*(body.get("history") or []), figures(body)]
    labels = [str(p.get("created") or "")[:16].replace("T", " ") for p in points]
    throughput = _series(points, "throughput_bytes_per_s", 1 / (1 << 20))
    rpo = _series(points, "rpo_s", 1 / 3600)
    return [
        "<h2>Trends</h2>",
        _line_chart("Read throughput per target (MiB/s)", throughput, labels),
        _line_chart("Recovery point per source (hours)", rpo, labels),
    ]


def _series(points: list[dict[str, Any]], key: str, scale: float) -> dict[str, list[float | None]]:
    names = sorted({str(n) for p in points for n in (p.get(key) or {})})
    series: dict[str, list[float | None]] = {}
    for name in names:
        values = [(p.get(key) or {}).get(name) for p in points]
        series[name] = [float(v) * scale if isinstance(v, int | float) else None for v in values]
    return series


def _line_chart(title: str, series: dict[str, list[float | None]], labels: list[str]) -> str:
    width, height, left, bottom, top = 640, 240, 48, 28, 48
    values = [v for line in series.values() for v in line if v is not None]
    if not values:
        return f"<p class=muted>{escape(title)}: no figures yet.</p>"
    peak = max(values) or 1.0
    count = max(len(labels), 1)

    def x(i: int) -> float:
        return left + (width - left - 10) * (i / (count - 1) if count > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / peak)

    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left}" y="14">{escape(title)}</text>',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - 10}" y2="{y(0):.1f}" stroke="#999"/>',
        f'<text x="4" y="{y(peak) + 4:.1f}">{peak:.3g}</text><text x="4" y="{y(0):.1f}">0</text>',
        f'<text x="{left}" y="{height - 8}">{escape(labels[0])}</text>',
        f'<text x="{width - 10}" y="{height - 8}" text-anchor="end">{escape(labels[-1])}</text>',
    ]
    for n, (name, line) in enumerate(series.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        dots = [(x(i), y(v)) for i, v in enumerate(line) if v is not None]
        if len(dots) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in dots)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in dots]
        legend = left + 130 * n
        parts.append(f'<rect x="{legend}" y="24" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend + 14}" y="33">{escape(name)}</text>')
    return "".join([*parts, "</svg>"])


def _samples(body: dict[str, Any]) -> dict[str, Any]:
    return {str(t.get("name")): t.get("samples", []) for t in body.get("targets") or []}


def _cls(verdict: object) -> str:
    return "pass" if verdict == "pass" else "fail"


def _size(value: object) -> str:
    return format_size(float(value)) if isinstance(value, int | float) else "—"


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "—"
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
