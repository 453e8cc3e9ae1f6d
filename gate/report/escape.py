"""Text from files (class names, id2label, paths, error messages, example inputs) shown in GitHub-flavoured
Markdown: the job summary, the PR comment. Every string is inert there: no HTML (`</details>`, `<img src=x>`), no
Markdown (links, emphasis, backticks, table pipes), no autolinks, no @mentions or #references that would notify
or link anyone, no bidi controls that reorder what the reader sees.

HTML characters become entities and Markdown's backslash-escaped (the parser sees no syntax, the reader the
character); a URL scheme's colon becomes an entity (no autolink); an @ or a # is followed by a zero-width space,
because GitHub finds mentions and references in the rendered text, after the entities are decoded.
"""
from __future__ import annotations

import re

_TABLE = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}
_TABLE.update({ord(c): "\\" + c for c in "\\`*~[]|$"})   # links, code, emphasis, table cells, math
for _code in [*range(0x00, 0x20), 0x7F]:
    _TABLE[_code] = " "
for _code in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
    _TABLE[_code] = "\ufffd"     # bidi controls: shown as a replacement character, never obeyed
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|xmpp|file|javascript|data)(:)|\b(www)(\.)")
_NOTIFY = re.compile(r"([@#])(?=[\w-])")   # @user, @org/team, #123: GitHub links them in the rendered text


class Markup(str):
    """Markdown written by gate itself (an emoji, a status), passed through unescaped where text would be."""


_PLAIN = {code: " " for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]}
_PLAIN.update({code: "\ufffd" for code in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def plain_text(value: object, *, limit: int | None = None) -> str:
    """Text from a data or cases file for any report: control characters (terminal escapes, newlines) become
    spaces, bidi controls a replacement character, and at most `limit` characters are kept ("..." marks a cut).
    Markdown and HTML renderers escape the result again for their own syntax.

    >>> plain_text("bad\\x1b[31m red\\nline", limit=12)
    'bad [31m ...'
    """
    text = ("" if value is None else str(value)).translate(_PLAIN)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def md_text(value: object) -> str:
    """One line of inert text for a paragraph or a table cell.

    >>> md_text("</details><img src=x> @team [x](http://e.vil) a|b")
    '&lt;/details&gt;&lt;img src=x&gt; @\\u200bteam \\\\[x\\\\](http&#58;//e.vil) a\\\\|b'
    """
    if isinstance(value, Markup):
        return str(value)
    text = _NOTIFY.sub("\\1\u200b", "" if value is None else str(value)).translate(_TABLE)
    return _AUTOLINK.sub(lambda m: f"{m.group(1) or m.group(3)}&#{ord(m.group(2) or m.group(4))};", text)


def md_code(value: object) -> str:
    """A path or an identifier, shown as code (an HTML code element: a backtick in the value cannot end it)."""
    return f"<code>{md_text(value)}</code>"


def md_fence(text: str, *, info: str = "text") -> str:
    """A fenced code block that `text` cannot close: the fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}\n"


def mermaid_text(value: object) -> str:
    """A label inside a mermaid chart: only letters, digits, spaces and plain punctuation survive."""
    return re.sub(r"[^\w .,:/+=()\[\]%-]", "_", "" if value is None else str(value))
