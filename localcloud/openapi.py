"""One OpenAPI document for the whole API, merged from each API function's own resolver (the code is the spec)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn
from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

from infra.topology import Topology

TITLE = "Image Processing System"


def merged_openapi(topology: Topology, server_url: str = "/") -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in sorted({route.function for route in topology.routes}):
        app = importlib.import_module(topology.function(name).module).app
        schema = json.loads(
            app.get_openapi_json_schema(
                title=TITLE,
                version="1.0.0",
                description="Compress the images of a products CSV; poll the status; get a signed webhook.",
                security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
                security=[{"apiKey": []}],
            )
        )
        if not merged:
            merged = schema
            continue
        merged["paths"].update(schema.get("paths", {}))
        merged.setdefault("components", {}).setdefault("schemas", {}).update(
            schema.get("components", {}).get("schemas", {})
        )
    merged["servers"] = [{"url": server_url}]
    return merged


def swagger_page(spec: dict[str, Any]) -> str:
    """Swagger UI with powertools' bundled assets, so the page works offline."""
    assets = Path(importlib.import_module("aws_lambda_powertools.event_handler").__file__ or "").parent
    folder = assets / "openapi" / "swagger_ui"
    return generate_swagger_html(
        json.dumps(spec).replace("</", "<\\/"),
        (folder / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (folder / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
