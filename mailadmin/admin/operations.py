"""The operations page (admins): the playbook's 60-second diagnosis, live, and the playbook itself.

Both views only show what `mailadmin.ops.run_diagnosis()` found — the same checks as
`flask --app wsgi doctor`. The playbook is rendered by a deliberately small Markdown subset
(headings with GitHub anchors, fenced code, tables, lists, inline code, links, bold) so that
every link from the page works offline; `?raw=1` serves the file as plain text.
"""

from __future__ import annotations

import html
import re

from flask import Response, abort, render_template, request, url_for
from markupsafe import Markup

from mailadmin.admin.views import bp
from mailadmin.auth.decorators import admin_required
from mailadmin.ops import PLAYBOOK_FILES, PlaybookRef, format_age, heading_slug, playbook_path, run_diagnosis


def playbook_url(ref: PlaybookRef) -> str:
    """URL of a playbook section on this site."""
    return url_for("admin.playbook", name=ref.name, _anchor=ref.anchor)


@bp.route("/operations")
@admin_required
def operations():
    """The 60-second diagnosis, live: one block per check, each linking to its playbook section."""
    return render_template(
        "admin/operations.html", diagnosis=run_diagnosis(), playbook_url=playbook_url, format_age=format_age
    )


@bp.route("/playbook/<name>")
@admin_required
def playbook(name: str):
    """A playbook file rendered with GitHub's heading anchors (`?raw=1`: the Markdown as plain text)."""
    if name not in PLAYBOOK_FILES:
        abort(404)
    path = playbook_path(name)
    if not path.exists():
        abort(404)
    source = path.read_text(encoding="utf-8")
    if request.args.get("raw"):
        return Response(source, mimetype="text/plain; charset=utf-8")
    return render_template("admin/operations.html", playbook_html=render_markdown(source), playbook_name=name,
                           playbook_file=PLAYBOOK_FILES[name])


# --- a small Markdown renderer ---------------------------------------------------------------

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^(\s*)([-*]|\d+\.)\s+(.*)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_FILE_LINK = re.compile(r"^(?:\./|playbook/)?(ONCALL|OBSERVABILITY)\.md(#[\w-]*)?$")


def _link_target(target: str) -> str:
    """Links between the playbook files point at this site's playbook pages."""
    match = _FILE_LINK.match(target)
    if match:
        name = match.group(1).lower()
        return url_for("admin.playbook", name=name) + (match.group(2) or "")
    return target


def _inline(text: str) -> str:
    """Escape `text` and render code spans, links and bold."""
    spans: list[str] = []

    def keep(match: re.Match) -> str:
        spans.append(f"<code>{html.escape(match.group(1))}</code>")
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE_SPAN.sub(keep, text)
    text = html.escape(text)
    text = _LINK.sub(lambda m: f'<a href="{html.escape(_link_target(html.unescape(m.group(2))))}">{m.group(1)}</a>', text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def render_markdown(source: str) -> Markup:
    """HTML for the playbook's Markdown: headings get the same ids GitHub gives them."""
    out: list[str] = []
    lines = source.splitlines()
    seen: dict[str, int] = {}
    paragraph: list[str] = []
    i = 0

    def flush_paragraph() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush_paragraph()
            language = fence.group(1)
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            css = f' class="language-{language}"' if language else ""
            out.append(f"<pre><code{css}>{html.escape(chr(10).join(body))}</code></pre>")
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            flush_paragraph()
            level = len(heading.group(1))
            slug = heading_slug(heading.group(2))
            if slug in seen:
                seen[slug] += 1
                slug = f"{slug}-{seen[slug]}"
            else:
                seen[slug] = 0
            out.append(f'<h{level} id="{slug}"><a href="#{slug}">{_inline(heading.group(2))}</a></h{level}>')
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_SEPARATOR.match(lines[i + 1]):
            flush_paragraph()
            head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(line))
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append(f'<div class="table-scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
            continue
        item = _LIST_ITEM.match(line)
        if item and not line.startswith("    "):
            flush_paragraph()
            tag = "ol" if item.group(2)[0].isdigit() else "ul"
            items: list[str] = []
            while i < len(lines):
                item = _LIST_ITEM.match(lines[i])
                if item:
                    items.append(item.group(3))
                elif lines[i].strip() and lines[i].startswith("  ") and items:
                    items[-1] += " " + lines[i].strip()
                else:
                    break
                i += 1
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + f"</{tag}>")
            continue
        if line.startswith(">"):
            flush_paragraph()
            quote = []
            while i < len(lines) and lines[i].startswith(">"):
                quote.append(lines[i][1:].strip())
                i += 1
            out.append(f"<blockquote>{_inline(' '.join(quote))}</blockquote>")
            continue
        if not line.strip():
            flush_paragraph()
        else:
            paragraph.append(line.strip())
        i += 1
    flush_paragraph()
    return Markup("\n".join(out))
