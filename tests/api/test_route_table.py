"""Every inference route is listed once and served the same way in through both doors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from api.routes.table import INFERENCE_ROUTES

if TYPE_CHECKING:
    from tests.api.conftest import ApiUnderTest

# One concrete path per table row (a prefix row gets a Gemini method target).
PATHS = [r.path + "m:generateContent" if r.prefix else r.path for r in INFERENCE_ROUTES]


@pytest.mark.parametrize("path", PATHS)
def test_each_route_answers_a_post_in_its_own_protocol(api: ApiUnderTest, path: str) -> None:
    got = api.http.post(path, content=b"{}")  # no key: refused before anything else
    assert got.status_code == 401
    body = got.json()
    # each dialect's own error shape, not FastAPI's {"detail": ...}
    assert "detail" not in body and ("error" in body or body.get("type") == "error")


@pytest.mark.parametrize("path", PATHS)
def test_the_same_paths_refuse_other_methods(api: ApiUnderTest, path: str) -> None:
    assert api.http.get(path).status_code == 405  # FastAPI knows them too, from the same table


def test_an_unknown_path_is_a_json_404(api: ApiUnderTest) -> None:
    got = api.http.post("/v1/unknown", content=b"{}")
    assert got.status_code == 404 and got.json()["error"]["code"] == "unknown_url"


def test_a_gemini_target_that_is_not_a_method_is_a_gemini_404(api: ApiUnderTest) -> None:
    got = api.http.post("/v1beta/models/m:explode", headers={"x-goog-api-key": "sk-api-unit"}, content=b"{}")
    assert got.status_code == 404 and got.json()["error"]["status"] == "NOT_FOUND"
