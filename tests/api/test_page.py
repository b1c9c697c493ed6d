"""The public page in a real browser (headless Chromium): it loads with the design system and
shows the live services with the figures the API computes from the test database."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from api.catalogue import load
from api.routers.page import number

from .conftest import ApiServer

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
)  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, (
        "Chromium is missing: scripts/bootstrap test installs it (apt-get install chromium)"
    )
    return found


def browse(url: str, tmp_path: Path, *args: str) -> str:
    """The page's DOM after its scripts ran (or the stdout of another Chromium action)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
         url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def shown(dom: str, kpi: str) -> str:
    match = re.search(rf'data-kpi="{kpi}"[^>]*>\s*<span class="kpi-value">([^<]*)</span>', dom)
    assert match, f"KPI {kpi} not on the page"
    return html.unescape(match.group(1))


@pytest.mark.parametrize("lang", ["it", "en"])
def test_page_shows_live_services_with_their_figures(
    api_server: ApiServer, tmp_path: Path, lang: str
) -> None:
    dom = browse(f"{api_server.url}/?lang={lang}", tmp_path, "--dump-dom")
    assert f'<html lang="{lang}"' in dom
    assert 'data-design-system="loaded"' in dom, "bootstrap-italia's script did not run"
    background = re.search(r'data-header-background="([^"]*)"', dom)
    assert background, "the page's script did not run"
    assert background.group(1) not in ("", "rgba(0, 0, 0, 0)"), "bootstrap-italia's CSS is missing"
    services = httpx.get(f"{api_server.url}/v1/services").json()["data"]
    figures = 0
    for s in services:
        assert f'id="service-{s["id"]}" data-status="{s["status"]}"' in dom
        assert html.escape(s["name"][lang], quote=False) in html.unescape(dom)
        for k in s["kpis"]:
            if k["measured"]:
                assert shown(dom, k["id"]) == number(k["value"], lang), k["id"]
                figures += k["value"] not in (None, 0)
    assert figures >= 10, "the test city should give the page real numbers"
    planned = sum(s.status == "planned" for s in load().services)
    assert dom.count('data-status="planned"') == planned
    other = "English" if lang == "it" else "Italiano"
    assert re.search(rf'id="lang-switch"[^>]*>\s*{other}\s*<', dom)


def layout(dom: str) -> dict[str, int]:
    found = dict(re.findall(r'data-(viewport|scroll-width|columns)="(\d+)"', dom))
    assert len(found) == 3, "the page's script did not run"
    return {k: int(v) for k, v in found.items()}


def test_page_fits_a_phone_screen(api_server: ApiServer, tmp_path: Path) -> None:
    shot = tmp_path / "phone.png"
    browse(f"{api_server.url}/", tmp_path, "--window-size=390,1600", f"--screenshot={shot}",
           "--hide-scrollbars")  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 390
    # Headless Chromium lays out no narrower than 500 px: still below Bootstrap's 576 px
    # breakpoint, so this is the phone layout: one column, nothing wider than the screen.
    phone = layout(browse(f"{api_server.url}/", tmp_path, "--window-size=390,844", "--dump-dom"))
    assert phone["viewport"] < 576
    assert phone["scroll-width"] <= phone["viewport"]
    assert phone["columns"] == 1
    desktop = layout(browse(f"{api_server.url}/", tmp_path, "--window-size=1280,900", "--dump-dom"))
    assert desktop["columns"] == 3


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_load_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    """The docs pages must work on a machine without internet: nothing from a CDN."""
    r = await client.get(page)
    assert r.status_code == 200
    assert not re.search(r"https?:|//[a-z]", r.text), "the page loads something from elsewhere"
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', r.text)
    urls += re.findall(r"url: '([^']+)'", r.text)
    assert len(urls) >= 3, urls  # its script, its icon, the OpenAPI document
    for url in urls:
        assert url.startswith("/"), url
        assert (await client.get(url)).status_code == 200, url


def test_swagger_ui_renders_the_operations(api_server: ApiServer, tmp_path: Path) -> None:
    dom = browse(f"{api_server.url}/docs", tmp_path, "--dump-dom")
    assert 'class="swagger-ui' in dom, "Swagger UI's script did not run"
    assert "/v1/opendata/datasets" in dom, "the operations are not listed"
