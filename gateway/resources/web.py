"""The market web page at `/` and its files under `/static/`, from gateway/web/.

The page is plain HTML, CSS and ES modules (no bundler, no CDN, nothing fetched from the
network at run time) that use the public REST API of this gateway and the WebSocket feed
like any other client; docs/web.md describes it. The gateway fills in one thing when it
serves the page: where the feed is (`feed.public_url`, else `ws_port` on the page's own
host), in two <meta> tags, so the same files work directly and behind a proxy.
"""

from __future__ import annotations

import html
from pathlib import Path, PurePosixPath

import falcon
from falcon.routing import StaticRoute

from common.config import Config
from common.types import RejectCode
from gateway.envelope import ApiError
from gateway.operations import operation

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
STATIC_PREFIX = "/static"
# Only these kinds of file are served; anything else under /static is a 404.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Third-party files live under a directory named with their version: a URL never changes
# content, so browsers may keep them. The page's own files are revalidated (ETag) each load.
IMMUTABLE_PREFIX = "vendor/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The feed is on another port (or host), hence ws: and wss: in connect-src.
PAGE_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render_page(template: str, config: Config) -> bytes:
    """Return the page with the feed's location filled in."""
    return (template.replace("{{feed_url}}", html.escape(config.feed.public_url or ""))
            .replace("{{feed_port}}", str(config.ws_port))
            .encode())


class MarketPage:
    """`GET /`: the market page (order book, depth, trades, candles, order ticket)."""

    def __init__(self, config: Config) -> None:
        self.page = render_page((WEB_DIR / "index.html").read_text(encoding="utf-8"), config)

    @operation(summary="The market web page", envelope=False, content_type="text/html",
               response={"type": "string"}, tags=("web",),
               description="Order book, depth chart, trades, candles and an order ticket; see docs/web.md.")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Content-Security-Policy", PAGE_CONTENT_SECURITY_POLICY)
        resp.set_header("Cache-Control", REVALIDATE)
        resp.data = self.page


class StaticFile:
    """`GET /static/{path}`: the page's scripts, styles and images, with ETags."""

    def __init__(self) -> None:
        # Falcon's static route does the path checks (no traversal, no odd characters),
        # ETag / Last-Modified with 304s, and ranges.
        self._files = StaticRoute(STATIC_PREFIX, STATIC_DIR)

    @operation(summary="The market web page's files", envelope=False, documented=False)
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        file = PurePosixPath(path)
        content_type = CONTENT_TYPES.get(file.suffix)
        if content_type is None or ".." in file.parts:
            raise ApiError(RejectCode.NOT_FOUND, f"no such file: {path[:80]}")
        self._files(req, resp)
        if resp.status_code != 304:  # a 304 has no body, so no type
            resp.content_type = content_type
        resp.set_header("Cache-Control", IMMUTABLE if path.startswith(IMMUTABLE_PREFIX) else REVALIDATE)
