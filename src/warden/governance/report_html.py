"""The HTML report: one self-contained page (inline CSS, JavaScript and SVG, no external URL).

Tables sort when a header is clicked. A fragment `#sort=<table>:<column>:<asc|desc>` clicks
that header on load, so that a link (or a headless browser) can open the page already
sorted. The sorted table records the order in its `data-sorted` attribute.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from warden.governance.model import Identity

if TYPE_CHECKING:
    from warden.governance.audit import AuditReport

AGE_BUCKETS = (("< 30 days", 30), ("30-90 days", 90), ("90 days-1 year", 365), ("> 1 year", None))
USE_BUCKETS = ("used in last 30 days", "idle 31-90 days", "idle > 90 days", "never used")
USE_COLOURS = ("#2e7d32", "#f9a825", "#e65100", "#b71c1c")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d1d1f}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:.6rem 1rem;min-width:8rem}.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{border-bottom:1px solid #e5e5e5;
padding:.3rem .5rem;text-align:left;vertical-align:top}th{cursor:pointer;background:#f5f5f7;
position:sticky;top:0;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
td.mono{font-family:ui-monospace,monospace;min-width:16rem;word-break:break-all}.sev-critical{background:#b71c1c;color:#fff}.sev-high{color:#b71c1c;
font-weight:600}.sev-medium{color:#e65100}.sev-low{color:#01579b}ul.ev{margin:0;padding-left:1rem}
.muted{color:#6e6e73}
"""

_SCRIPT = """
(function(){
  function key(cell){var v=cell.getAttribute('data-sort');if(v===null){v=cell.textContent.trim();}
    var n=Number(v);return (v!==''&&!isNaN(n))?n:v.toLowerCase();}
  function sortTable(table,col,dir){
    var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
      if(typeof x!==typeof y){x=String(x);y=String(y);}
      return (x<y?-1:x>y?1:0)*(dir==='desc'?-1:1);});
    rows.forEach(function(r){body.appendChild(r);});
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
      th.setAttribute('aria-sort',i===col?(dir==='desc'?'descending':'ascending'):'none');});
    table.setAttribute('data-sorted',col+':'+dir);
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
      th.addEventListener('click',function(){
        var dir=th.getAttribute('aria-sort')==='ascending'?'desc':'asc';sortTable(table,i,dir);});
    });
  });
  var m=/sort=([\\w-]+):(\\d+):(asc|desc)/.exec(window.location.hash);
  // Sorting from the fragment goes through the header's click handler, like a person would.
  if(m){var t=document.getElementById(m[1]);var th=t&&t.tHead.rows[0].cells[Number(m[2])];
    if(th){th.click();if(m[3]==='desc'){th.click();}}}
})();
"""


def render_html(report: AuditReport) -> str:
    as_of = report.as_of.strftime("%Y-%m-%d %H:%M:%S UTC")
    summary = report.to_json()["summary"]
    cards = [
        ("non-human identities", summary["identities"]),
        ("humans (listed apart)", summary["humans"]),
        ("findings", summary["findings"]),
        *((f"{name} findings", count) for name, count in summary["findings_by_severity"].items()),
        ("suppressed", summary["suppressed_findings"]),
        ("input warnings", summary["warnings"]),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Warden audit as of {escape(as_of)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Warden audit of non-human identities</h1>",
        f'<p>As of <b id="as-of">{escape(as_of)}</b>; generated '
        f"{escape(report.generated_at.strftime('%Y-%m-%d %H:%M:%S UTC'))}. Ages and idle times are "
        "measured at the as-of time.</p>",
        '<div class="cards">',
        *(f'<div class="card"><b>{value}</b>{escape(label)}</div>' for label, value in cards),
        "</div>",
        "<h2>Identities by age and last use</h2>",
        _chart(report),
        "<h2>Non-human identities</h2>",
        _identities_table(report),
        "<h2>Findings</h2>",
        _findings_table(report),
    ]
    if report.expired_suppressions:
        parts.append("<h2>Expired suppressions</h2><ul>")
        parts.extend(
            f"<li>{escape(str(item['check']))} on {escape(str(item['identity']))}, accepted by "
            f"{escape(str(item['accepted_by']))}: {escape(str(item['message']))}</li>"
            for item in report.expired_suppressions
        )
        parts.append("</ul>")
    parts.append("<h2>Human identities (no checks run)</h2>")
    parts.append(_humans_table(report))
    if report.warnings:
        parts.append("<h2>Input warnings</h2><ul>")
        parts.extend(f"<li class=mono>{escape(str(w))}</li>" for w in report.warnings)
        parts.append("</ul>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _date(moment: datetime | None) -> tuple[str, str]:
    """Return the display text and the sort key of a time."""
    if moment is None:
        return "never", ""
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m-%dT%H:%M:%S")


def _identities_table(report: AuditReport) -> str:
    headers = (
        "Risk",
        "Level",
        "Identity",
        "Kind",
        "Owner",
        "Owner source",
        "Created",
        "Last used",
        "Classification",
        "Findings",
    )
    rows = []
    for identity in report.identities:
        risk = report.risks[identity.id]
        created, created_key = _date(identity.created_at)
        used, used_key = _date(identity.last_used_at)
        cells = [
            f'<td data-sort="{risk.score}">{risk.score}</td>',
            f'<td class="sev-{escape(risk.level)}">{escape(risk.level)}</td>',
            f'<td class="mono">{escape(identity.id)}</td>',
            f"<td>{escape(str(identity.kind))}</td>",
            f"<td>{escape(identity.owner or 'unknown')}</td>",
            f"<td>{escape(identity.owner_source or '')}</td>",
            f'<td data-sort="{created_key}">{created}</td>',
            f'<td data-sort="{used_key}">{used}</td>',
            f"<td>{escape(identity.classification)}</td>",
            f"<td>{len(risk.reasons)}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _table("identities", headers, rows)


def _findings_table(report: AuditReport) -> str:
    headers = ("Severity", "Check", "OWASP", "Identity", "Title", "Evidence", "Remediation")
    rows = []
    for item in report.findings:
        evidence = "".join(f"<li>{escape(line)}</li>" for line in item.evidence)
        cells = [
            f'<td data-sort="{int(item.severity)}" class="sev-{item.severity}">'
            f"{item.severity}</td>",
            f"<td>{escape(item.check)}</td>",
            f"<td>{escape(item.owasp)}</td>",
            f'<td class="mono">{escape(item.identity)}</td>',
            f"<td>{escape(item.title)}</td>",
            f'<td><ul class="ev">{evidence}</ul></td>',
            f"<td>{escape(item.remediation)}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _table("findings", headers, rows)


def _humans_table(report: AuditReport) -> str:
    headers = ("Identity", "Kind", "Classification", "Last used")
    rows = []
    for identity in report.humans:
        used, used_key = _date(identity.last_used_at)
        rows.append(
            f'<tr><td class="mono">{escape(identity.id)}</td><td>{escape(str(identity.kind))}</td>'
            f"<td>{escape(identity.classification)}</td>"
            f'<td data-sort="{used_key}">{used}</td></tr>'
        )
    return _table("humans", headers, rows)


def _table(table_id: str, headers: tuple[str, ...], rows: list[str]) -> str:
    head = "".join(f'<th scope="col" aria-sort="none">{escape(h)}</th>' for h in headers)
    body = "\n".join(rows) or f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return (
        f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table>"
    )


def _buckets(report: AuditReport) -> list[list[int]]:
    """Count non-human identities by age bucket, then by last-use bucket, at the as-of time."""
    counts = [[0] * len(USE_BUCKETS) for _ in range(len(AGE_BUCKETS) + 1)]
    for identity in report.identities:
        counts[_age_bucket(identity, report.as_of)][_use_bucket(identity, report.as_of)] += 1
    return counts


def _age_bucket(identity: Identity, as_of: datetime) -> int:
    if identity.created_at is None:
        return len(AGE_BUCKETS)
    days = (as_of - identity.created_at).days
    for index, (_label, limit) in enumerate(AGE_BUCKETS):
        if limit is None or days < limit:
            return index
    return len(AGE_BUCKETS) - 1


def _use_bucket(identity: Identity, as_of: datetime) -> int:
    if identity.last_used_at is None:
        return 3
    idle = (as_of - identity.last_used_at).days
    if idle <= 30:
        return 0
    if idle <= 90:
        return 1
    return 2


def _chart(report: AuditReport) -> str:
    """Draw a stacked bar chart in inline SVG: one bar per age bucket, stacked by last use."""
    counts = _buckets(report)
    labels = [label for label, _limit in AGE_BUCKETS] + ["age unknown"]
    width, height, left, bottom, top = 720, 300, 50, 40, 20
    bar_width = (width - left - 20) / len(labels) * 0.6
    step = (width - left - 20) / len(labels)
    peak = max((sum(row) for row in counts), default=0) or 1
    scale = (height - bottom - top) / peak

    shapes = [
        f'<svg id="age-chart" role="img" aria-label="Identities by age and last use" '
        f'width="{width}" height="{height + 30}" viewBox="0 0 {width} {height + 30}">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#999"/>',
        f'<text x="4" y="{top + 4}" font-size="11">{peak}</text>',
        f'<text x="4" y="{height - bottom}" font-size="11">0</text>',
    ]

    for index, row in enumerate(counts):
        x = left + index * step + (step - bar_width) / 2
        y = float(height - bottom)
        for use_index, value in enumerate(row):
            if not value:
                continue
            bar = value * scale
            y -= bar
            shapes.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" '
                f'height="{bar:.1f}" fill="{USE_COLOURS[use_index]}" data-count="{value}">'
                f"<title>{escape(labels[index])}, {USE_BUCKETS[use_index]}: {value}</title></rect>"
            )
        shapes.append(
            f'<text x="{x + bar_width / 2:.1f}" y="{height - bottom + 16}" font-size="11" '
            f'text-anchor="middle">{escape(labels[index])} ({sum(row)})</text>'
        )

    # The legend, one swatch per last-use bucket.
    for use_index, label in enumerate(USE_BUCKETS):
        x = left + use_index * 165
        shapes.append(
            f'<rect x="{x}" y="{height + 8}" width="12" height="12" '
            f'fill="{USE_COLOURS[use_index]}"/>'
        )
        shapes.append(f'<text x="{x + 16}" y="{height + 18}" font-size="11">{label}</text>')
    shapes.append("</svg>")
    return "\n".join(shapes)
