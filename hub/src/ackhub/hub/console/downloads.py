"""A file of a case's message as an HTTP download, for the console and the portal alike: sent as an
attachment with its stored media type, never rendered in the page's origin (an uploaded HTML page or SVG
cannot run there)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from ackhub.hub.cases.views import NewAttachment


def file_download(found: NewAttachment) -> Response:
    return Response(
        found.content,
        media_type=found.content_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.filename, safe='')}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, no-store",
        },
    )
