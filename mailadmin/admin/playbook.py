"""The playbook as HTML for the operations page, rendered by markdown-it-py (CommonMark + tables).

Three additions to the stock rendering, so that every link from the page works offline:
headings get the ids GitHub gives them (`mailadmin.ops.heading_slug`, the anchors the checks
link to) and link to themselves; links between the playbook files point at this site's playbook
pages. Raw HTML in the Markdown is escaped (`html=False`), and markdown-it refuses
`javascript:`-style link targets.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import url_for
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

from mailadmin.ops import heading_slug

# `ONCALL.md#x`, `./OBSERVABILITY.md`, `playbook/ONCALL.md#x`: a link to another playbook file.
_FILE_LINK = re.compile(r"^(?:\./|playbook/)?(ONCALL|OBSERVABILITY)\.md(#[\w-]*)?$")


def render_playbook(source: str, link_target: Callable[[str], str] | None = None) -> Markup:
    """HTML for a playbook file; `link_target` rewrites each link's href (default: `playbook_link_target`)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.core.ruler.push("playbook_anchors", _heading_ids)
    md.core.ruler.push("playbook_links", lambda state: _rewrite_links(state, link_target or playbook_link_target))
    md.add_render_rule("heading_open", _heading_open)
    md.add_render_rule("heading_close", _heading_close)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("table_open", lambda self, tokens, idx, options, env: '<div class="table-scroll"><table>\n')
    md.add_render_rule("table_close", lambda self, tokens, idx, options, env: "</table></div>\n")
    return Markup(md.render(source))


def playbook_link_target(href: str) -> str:
    """Links between the playbook files point at this site's playbook pages; others are kept."""
    match = _FILE_LINK.match(href)
    if not match:
        return href
    return url_for("admin.playbook", name=match.group(1).lower()) + (match.group(2) or "")


def _heading_ids(state: StateCore) -> None:
    """Give each heading GitHub's anchor: its slug, with -1, -2 ... for repeated headings."""
    seen: dict[str, int] = {}
    tokens = state.tokens
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        slug = heading_slug(tokens[index + 1].content)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        token.attrSet("id", slug)


def _rewrite_links(state: StateCore, link_target: Callable[[str], str]) -> None:
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "link_open":
                child.attrSet("href", link_target(str(child.attrGet("href") or "")))


def _heading_open(self, tokens: list[Token], idx: int, options, env) -> str:
    """`<h2 id="slug"><a href="#slug">`: each heading links to itself."""
    slug = escapeHtml(str(tokens[idx].attrGet("id")))
    return f'<{tokens[idx].tag} id="{slug}"><a href="#{slug}">'


def _heading_close(self, tokens: list[Token], idx: int, options, env) -> str:
    return f"</a></{tokens[idx].tag}>\n"


def _fence(self, tokens: list[Token], idx: int, options, env) -> str:
    """A fenced block with its language as `language-<name>` class, without the trailing newline."""
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    css = f' class="language-{escapeHtml(language)}"' if language else ""
    return f"<pre><code{css}>{escapeHtml(token.content.rstrip(chr(10)))}</code></pre>\n"
