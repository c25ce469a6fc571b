"""The small plain pages a person sees at the end of a sign-in. Everything shown is escaped;
the pages load nothing and link only to where the sign-in said to return."""

from __future__ import annotations

from html import escape

from aiohttp import web

#: Nothing on these pages may leak the callback's URL (it carries the code and the state)
#: to another site, be framed, or run anything.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;
line-height:1.5;color:#222}}h1{{font-size:1.4rem}}</style></head>
<body><h1>{title}</h1><p>{detail}</p>{link}</body></html>
"""


def page(title: str, detail: str, *, status: int = 200, link: str = "") -> web.Response:
    """A page saying `title` and `detail`, with a link back to `link` when there is one."""
    back = f'<p><a href="{escape(link)}">Return to the application</a></p>' if link else ""
    return web.Response(
        status=status,
        content_type="text/html",
        charset="utf-8",
        text=_PAGE.format(title=escape(title), detail=escape(detail), link=back),
        headers=HEADERS,
    )


def redirect(location: str) -> web.Response:
    """Send the browser on (303: the callback's GET is not repeated)."""
    return web.Response(status=303, headers={**HEADERS, "Location": location})
