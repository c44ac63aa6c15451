"""The OpenAPI schema is served, valid and complete (drf-spectacular raises on any warning), with Swagger UI."""

import yaml
from django.core.management import call_command


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert len(operations) >= 20
    for operation in operations:
        assert operation.get("summary"), operation["operationId"]
        if "security" in operation and operation["security"] != [{}]:
            assert {"401", "403", "404", "429"} <= set(operation["responses"]), operation["operationId"]
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorDetail")
    create = schema["paths"]["/api/v1/cases/"]["post"]
    assert {"200", "201", "413", "415"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])


def test_schema_and_swagger_ui_are_served(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"openapi: 3" in schema.content
    assert client.get("/api/schema/?format=json").json()["info"]["title"] == "TeleDerm API"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr" not in docs.content  # served from the package: works offline
