"""What the upload page relies on, over HTTP: the gateway serves it, the API answers its origin's CORS
preflights and marks its answers (the functions' and the gateway's own errors) readable there, and the uploads
bucket takes the presigned POST from that origin."""

from __future__ import annotations

import requests

from tests.e2e.conftest import KEYS, Cloud


def test_the_gateway_serves_the_page(cloud: Cloud) -> None:
    root = requests.get(f"{cloud.url}/", allow_redirects=False, timeout=30)
    assert (root.status_code, root.headers["location"]) == (302, "/app/")
    page = requests.get(f"{cloud.url}/app/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="app.js" defer></script>' in page.text
    script = requests.get(f"{cloud.url}/app/app.js", timeout=30)
    assert script.headers["content-type"].startswith("text/javascript")
    assert requests.get(f"{cloud.url}/app/config.json", timeout=30).json() == {"apiUrl": ""}
    for missing in ("/app/nothing.js", "/app/..%2Fpyproject.toml", "/app/../README.md"):
        assert requests.get(f"{cloud.url}{missing}", timeout=30).status_code == 404, missing


def test_the_api_answers_the_pages_origin_with_cors(cloud: Cloud) -> None:
    origin = {"origin": cloud.url}
    preflight = requests.options(
        f"{cloud.url}/api/v1/uploads",
        headers={**origin, "access-control-request-method": "POST", "access-control-request-headers": "x-api-key"},
        timeout=30,
    )
    assert preflight.status_code == 204  # no API key on a preflight: browsers never send one
    assert preflight.headers["access-control-allow-origin"] == cloud.url
    assert "x-api-key" in preflight.headers["access-control-allow-headers"]
    assert "POST" in preflight.headers["access-control-allow-methods"]

    missing = requests.get(f"{cloud.url}/api/v1/status/nope", headers={**origin, "x-api-key": KEYS[0]}, timeout=30)
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == cloud.url
    refused = requests.get(f"{cloud.url}/api/v1/status/nope", headers={**origin, "x-api-key": "wrong"}, timeout=30)
    assert refused.status_code == 403 and refused.headers["access-control-allow-origin"] == cloud.url

    stranger = {"origin": "http://127.0.0.1:1"}
    foreign = requests.get(f"{cloud.url}/api/v1/status/nope", headers={**stranger, "x-api-key": KEYS[0]}, timeout=30)
    assert "access-control-allow-origin" not in foreign.headers
    foreign_preflight = requests.options(f"{cloud.url}/api/v1/uploads", headers=stranger, timeout=30)
    assert "access-control-allow-origin" not in foreign_preflight.headers


def test_the_uploads_bucket_takes_posts_from_the_pages_origin(cloud: Cloud) -> None:
    slot = requests.post(
        f"{cloud.url}/api/v1/uploads", headers={"x-api-key": KEYS[0]}, json={"filename": "a.csv"}, timeout=30
    ).json()
    preflight = requests.options(
        slot["upload"]["url"],
        headers={"origin": cloud.url, "access-control-request-method": "POST"},
        timeout=30,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == cloud.url
    assert "POST" in preflight.headers["access-control-allow-methods"]
    stranger = requests.options(
        slot["upload"]["url"],
        headers={"origin": "http://127.0.0.1:1", "access-control-request-method": "POST"},
        timeout=30,
    )
    assert stranger.status_code == 403  # "This CORS request is not allowed"
