"""The routers are matched in another order than the API documents them: no request may tell."""

from __future__ import annotations

from fastapi.routing import APIRoute

from workflow_engine.app import matching_order, routers


def _could_both_match(template: str, other: str) -> bool:
    """Whether some path matches both templates (a `{name}` stands for any one segment)."""
    segments, other_segments = template.split("/"), other.split("/")
    return len(segments) == len(other_segments) and all(
        a == b or a.startswith("{") or b.startswith("{")
        for a, b in zip(segments, other_segments, strict=True)
    )


def _routes(router: object) -> list[APIRoute]:
    found = [route for route in getattr(router, "routes", []) if isinstance(route, APIRoute)]
    # A `{name:path}` parameter spans segments, which `_could_both_match` does not model.
    assert not [route.path for route in found if ":path}" in route.path]
    return found


def test_every_documented_router_is_matched() -> None:
    assert sorted(map(id, matching_order)) == sorted(map(id, routers))


def test_a_router_matched_early_never_competes_with_one_it_overtook() -> None:
    documented = {id(router): index for index, router in enumerate(routers)}
    competing = [
        (f"{sorted(early.methods)} {early.path}", f"{sorted(late.methods)} {late.path}")
        for index, ahead in enumerate(matching_order)
        for behind in matching_order[index + 1 :]
        if documented[id(ahead)] > documented[id(behind)]
        for early in _routes(ahead)
        for late in _routes(behind)
        if early.methods & late.methods and _could_both_match(early.path, late.path)
    ]
    assert competing == []


def test_the_check_sees_a_real_collision() -> None:
    assert _could_both_match("/api/v1/workflows/templates/{name}", "/api/v1/workflows/{id}/status")
    assert not _could_both_match("/api/v1/workflows/{id}/status", "/api/v1/workflows/{id}")
    assert not _could_both_match("/swagger-ui", "/swagger-ui/")
