"""The API contract check: every answer the API tests get is compared with the OpenAPI schema the server
publishes. The status code must be documented for the operation, a JSON body must validate against that
status's schema, and an error's `code` must be one of the codes the schema lists for that status.

``tests/cases/api/conftest.py`` wraps every test client request under ``/api/v1/`` with :func:`check`.
"""

import json
import re
from functools import cache
from typing import Any

from jsonschema import Draft4Validator

API_PREFIX = "/api/v1/"


@cache
def schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema (draft 4): ``nullable`` becomes an allowed null, also next to a
    ``$ref``/``allOf`` without ``type`` (how drf-spectacular writes a nullable nested object)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if not node.get("nullable"):
        return converted
    if "type" in converted:
        converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        return converted
    return {"anyOf": [converted, {"type": "null"}]}


@cache
def _components() -> dict:
    return _json_schema(schema()["components"])


@cache
def _operations() -> list[tuple[int, re.Pattern, dict[str, Any]]]:
    routes = []
    for path, item in schema()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path) + "$")
        routes.append((path.count("{"), pattern, item))
    return sorted(routes, key=lambda route: route[0])  # literal paths (reports/verify/) before templates


def _validator(body_schema: dict) -> Draft4Validator:
    return Draft4Validator({**_json_schema(body_schema), "components": _components()})


def _documented_codes(response_spec: dict) -> set[str]:
    examples = response_spec.get("content", {}).get("application/json", {}).get("examples", {})
    return {
        example["value"]["error"]["code"]
        for example in examples.values()
        if isinstance(example.get("value"), dict) and "error" in example["value"]
    }


def check(method: str, path: str, response) -> list[str]:
    """The contract violations of one answer (an empty list when it matches the schema)."""
    where = f"{method.upper()} {path} -> {response.status_code}"
    items = [item for _, pattern, item in _operations() if pattern.match(path)]
    if not items:
        return [] if response.status_code == 404 else [f"{where}: undocumented path"]
    operation = next((item[method.lower()] for item in items if method.lower() in item), None)
    if operation is None:
        # A method the path does not offer: 405 (after authentication and permissions: 401/403 first).
        return [] if response.status_code in (401, 403, 405) else [f"{where}: undocumented method"]
    spec = operation["responses"].get(str(response.status_code))
    if spec is None:
        return [f"{where}: status not documented ({sorted(operation['responses'])})"]
    content_type = response.get("Content-Type", "")
    if "application/json" not in content_type:
        documented = spec.get("content", {})
        if documented and not any(t.split(";")[0] in content_type for t in documented):
            return [f"{where}: content type {content_type!r} not documented ({sorted(documented)})"]
        return []
    body_schema = spec.get("content", {}).get("application/json", {}).get("schema")
    if body_schema is None:
        return [f"{where}: a JSON body where the schema documents none"]
    body = json.loads(response.content)
    errors = [
        f"{where}: {e.message} at {list(e.absolute_path)}" for e in _validator(body_schema).iter_errors(body)
    ]
    if response.status_code >= 400 and not errors:
        codes = _documented_codes(spec)
        code = body["error"]["code"]
        if codes and code not in codes:
            errors.append(f"{where}: error code {code!r} not documented ({sorted(codes)})")
    return errors
