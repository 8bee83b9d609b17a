"""`/openapi.json` and Swagger UI at `/docs`, served from the swagger-ui-bundle package.

No CDN: the page, its scripts and styles all come from this gateway, so the docs work on
a machine with no internet access.
"""

from __future__ import annotations

from pathlib import Path

import falcon
import orjson
import swagger_ui_bundle

from common.types import RejectCode
from gateway.envelope import ApiError
from gateway.operations import operation

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'"
)
INDEX_HTML = b"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>zmx REST API</title>
    <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="/docs/index.css" />
    <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/docs/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""
INITIALIZER_JS = b"""window.onload = function() {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
"""
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}


class OpenApi:
    """The document, built once by create_app after every route is registered."""

    def __init__(self) -> None:
        self.document: bytes = b"{}"

    def set_document(self, document: dict) -> None:
        self.document = orjson.dumps(document)

    @operation(summary="This API's OpenAPI 3 document", envelope=False, response={"type": "object"},
               tags=("docs",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.document


class SwaggerUi:
    @operation(summary="Swagger UI", envelope=False, content_type="text/html", response={"type": "string"},
               tags=("docs",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY)
        resp.data = INDEX_HTML


class SwaggerAsset:
    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    @operation(summary="Swagger UI's files", envelope=False, documented=False)
    def on_get(self, req: falcon.Request, resp: falcon.Response, filename: str) -> None:
        if filename == "swagger-initializer.js":
            data, content_type = INITIALIZER_JS, ASSETS["swagger-ui-bundle.js"]
        elif filename in ASSETS:
            data = self._cache.get(filename)
            if data is None:
                data = self._cache[filename] = (SWAGGER_DIR / filename).read_bytes()
            content_type = ASSETS[filename]
        else:
            raise ApiError(RejectCode.NOT_FOUND, f"no such file: {filename[:80]}")
        resp.content_type = content_type
        resp.set_header("Cache-Control", "public, max-age=3600")
        resp.set_header("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY)
        resp.data = data
