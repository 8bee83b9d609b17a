"""The market page at `/` and its files under `/static/`: types, caching, 404s, no traversal."""

from __future__ import annotations

import configparser
import dataclasses
import fnmatch
import re

import pytest

from common.config import FeedConfig
from gateway.resources.web import PAGE_CONTENT_SECURITY_POLICY, WEB_DIR, render_page
from tests.conftest import REPO_ROOT
from tests.unit.gateway.conftest import make_config

LIGHTWEIGHT_CHARTS = "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js"


def meta(page: str, name: str) -> str:
    return re.search(rf'<meta name="{name}" content="([^"]*)">', page).group(1)


def test_the_page_is_html_with_its_own_policy_and_says_where_the_feed_is(gateway) -> None:
    page = gateway.client.simulate_get("/")

    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == PAGE_CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in PAGE_CONTENT_SECURITY_POLICY and "unsafe" not in PAGE_CONTENT_SECURITY_POLICY
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert meta(page.text, "zmx-feed-url") == ""
    assert meta(page.text, "zmx-feed-port") == str(gateway.config.ws_port)
    assert "{{" not in page.text


def test_every_file_the_page_names_is_served_from_the_gateway(gateway) -> None:
    page = gateway.client.simulate_get("/").text
    local = [source for source in re.findall(r'(?:src|href)="([^"]+)"', page) if source.startswith("/static/")]
    # No CDN: the only links elsewhere are the footer's (the API docs, the charts' attribution).
    assert set(re.findall(r'(?:src|href)="([^"]+)"', page)) - set(local) == {"/docs", "https://www.tradingview.com/"}
    assert LIGHTWEIGHT_CHARTS in local and "/static/app.js" in local
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for source in local:
        served = gateway.client.simulate_get(source)
        assert served.status_code == 200, source
        assert served.headers["Content-Type"] == types[source[source.rindex("."):]], source
    modules = re.findall(r'from "\./([a-z]+\.js)"', (WEB_DIR / "static" / "app.js").read_text())
    assert {"api.js", "book.js", "feed.js", "account.js"} <= set(modules)
    for module in modules:
        assert gateway.client.simulate_get(f"/static/{module}").status_code == 200, module


def test_own_files_are_revalidated_and_vendored_ones_kept(gateway) -> None:
    own = gateway.client.simulate_get("/static/app.js")
    vendored = gateway.client.simulate_get(LIGHTWEIGHT_CHARTS)

    assert own.headers["Cache-Control"] == "no-cache"
    assert vendored.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert vendored.text.startswith("/*!\n * @license\n * TradingView Lightweight Charts™ v5.2.1")
    again = gateway.client.simulate_get("/static/app.js", headers={"If-None-Match": own.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", [
    "/static/nothing.js",
    "/static/vendor/lightweight-charts-5.2.1/LICENSE",      # a kind of file that is not served
    "/static/../resources/web.py",
    "/static/../../setup.cfg",
    "/static/%2e%2e/index.html",
    "/static/..%2f..%2fsetup.cfg",
    "/static/vendor/../app.js",
    "/static//etc/passwd",
    "/static/",
    "/static",
    "/index.html",
])
def test_unknown_files_and_traversal_are_404(gateway, path: str) -> None:
    result = gateway.client.simulate_get(path)

    assert result.status_code == 404, path
    assert result.json["error"]["code"] == "NOT_FOUND"
    assert result.headers["Cache-Control"] == "no-store"


def test_a_configured_public_feed_url_is_written_into_the_page(tmp_path) -> None:
    config = make_config(tmp_path)
    behind_proxy = dataclasses.replace(config, feed=FeedConfig(public_url="wss://exchange.example/feed?x=1&y=2"))
    page = render_page((WEB_DIR / "index.html").read_text(), behind_proxy).decode()

    assert meta(page, "zmx-feed-url") == "wss://exchange.example/feed?x=1&amp;y=2"  # HTML-escaped


def test_the_page_is_documented_and_its_files_are_not(gateway) -> None:
    paths = gateway.client.simulate_get("/openapi.json").json["paths"]

    assert "text/html" in paths["/"]["get"]["responses"]["200"]["content"]
    assert not [path for path in paths if path.startswith("/static")]


def test_packaging_ships_every_file_of_the_page() -> None:
    """setup.cfg's package_data must match every file under gateway/web, or installs lose them."""
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    patterns = setup["options.package_data"]["gateway"].split()
    files = [path.relative_to(WEB_DIR.parent).as_posix() for path in WEB_DIR.rglob("*") if path.is_file()]
    assert len(files) > 10
    assert [file for file in files if not any(fnmatch.fnmatchcase(file, pattern) and
                                              file.count("/") == pattern.count("/") for pattern in patterns)] == []
