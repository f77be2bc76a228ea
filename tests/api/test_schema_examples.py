"""The OpenAPI document explains every operation: an example of its request (body and parameters) and
of every answer, and each error answer (400/401/403/404/409/422/429 as they apply) with its schema,
description and the headers a client acts on. Every example must match its own schema, so the
document cannot show a shape the API does not answer."""

from __future__ import annotations

import jsonschema_rs
import pytest

from orchestrator.api.v1 import api

ERROR_REF = "#/components/schemas/Errors"
EVERY_CALL_MAY = {"400", "401", "429"}  # unreadable input, no or a bad token, the rate limit
A_WRITE_MAY = {"403", "404", "409", "422"}  # not allowed, not there, changed meanwhile, refused


@pytest.fixture(scope="module")
def document():
    return api.get_openapi_schema(path_params={})


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", path, method, operation


def matches(document, schema: dict, instance) -> list[str]:
    """Why `instance` does not match `schema` (resolved within the document), or nothing."""
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
    return [str(e) for e in validator.iter_errors(instance)]


def test_every_operation_has_examples_and_documented_errors(document):
    seen = 0
    for name, path, method, operation in operations(document):
        seen += 1
        assert operation.get("summary"), name
        responses = operation["responses"]
        assert set(map(str, responses)) >= EVERY_CALL_MAY, name
        if "{" in path:
            assert "404" in set(map(str, responses)), name
        if method == "post":
            assert set(map(str, responses)) >= A_WRITE_MAY, name
            body = operation["requestBody"]["content"]
            assert body and all("example" in media for media in body.values()), name
        for parameter in operation.get("parameters", []):
            assert "example" in parameter, f"{name}: parameter {parameter['name']}"
        for status, response in responses.items():
            media = response["content"]["application/json"]
            assert "example" in media, f"{name} {status}"
            assert response["description"], f"{name} {status}"
            if int(status) >= 400:
                assert media["schema"] == {"$ref": ERROR_REF}, f"{name} {status}"
        assert "Retry-After" in responses[429]["headers"], name
        assert "WWW-Authenticate" in responses[401]["headers"], name
    assert seen >= 19


def test_every_example_matches_its_schema(document):
    problems = []
    for name, _path, _method, operation in operations(document):
        for status, response in operation["responses"].items():
            media = response["content"]["application/json"]
            problems += [
                f"{name} {status}: {p}" for p in matches(document, media["schema"], media["example"])
            ]
        for content_type, media in operation.get("requestBody", {}).get("content", {}).items():
            problems += [
                f"{name} body ({content_type}): {p}"
                for p in matches(document, media["schema"], media["example"])
            ]
        for parameter in operation.get("parameters", []):
            problems += [
                f"{name} {parameter['name']}: {p}"
                for p in matches(document, parameter["schema"], parameter["example"])
            ]
    assert problems == []


def test_the_error_examples_say_what_each_status_means(document):
    move = document["paths"]["/api/v1/pipes/{pipe_id}/cards/{card_id}/move"]["post"]["responses"]
    assert move[422]["content"]["application/json"]["example"]["errors"][0]["code"] == "transition"
    assert move[409]["content"]["application/json"]["example"]["errors"][0]["code"] == "conflict"
    assert move[429]["content"]["application/json"]["example"]["errors"][0]["code"] == "rate_limited"
    assert "expected_version" in move[409]["description"]


def test_the_served_document_is_the_one_checked(client):
    served = client.get("/api/v1/openapi.json").json()
    move = served["paths"]["/api/v1/pipes/{pipe_id}/cards/{card_id}/move"]["post"]
    assert move["requestBody"]["content"]["application/json"]["example"]["to_phase"] == "approval"
    assert move["responses"]["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
