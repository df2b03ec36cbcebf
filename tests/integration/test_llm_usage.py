"""LLM usage per tenant and day, per run, and daily budgets that stop a step before it calls.

The provider is a local server shaped like OpenAI's chat-completions API (it counts the
requests it gets), or the offline one."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply, fake_openai
from tests.integration.conftest import (
    Accounts,
    build_app,
    finished_run,
    running,
    steps_of,
    trigger_run,
)
from workflow_engine.auth.accounts import create_tenant
from workflow_engine.auth.permissions import Role

QUICK_RETRY = {"max_attempts": 3, "initial_delay": 0.05, "jitter": 0}
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}


def _chain(name: str, uses: str, count: int, **arguments: Any) -> dict[str, Any]:
    """`count` steps of `uses`, one after the other; each retries (a budget must not)."""
    steps = [
        {"id": f"s{n}", "uses": uses, "with": arguments, "retry": QUICK_RETRY,
         **({"needs": [f"s{n - 1}"]} if n else {})}
        for n in range(count)
    ]  # fmt: skip
    return {"name": name, "steps": steps}


WORKFLOWS = [
    _chain("three_chats", "llm.chat", 3, provider="openai", prompt="hi"),
    _chain("offline_pair", "llm.classify", 2, text="Where is my order?",
           labels=["order", "refund"]),
    _chain("chat", "llm.chat", 1, provider="openai", prompt="hi"),
    _chain("chat_as", "llm.chat", 1, provider="openai", model="{{ input.model }}", prompt="hi"),
    _chain("extract", "llm.extract", 1, provider="openai", text="Order A-1",
           schema=ORDER_SCHEMA),
]  # fmt: skip


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


Client = tuple[httpx.AsyncClient, Accounts]


@asynccontextmanager
async def _server(
    database_url: str, tmp_path: Path, openai: FakeOpenAI, **env: str
) -> AsyncIterator[Client]:
    openai.reset()
    app = build_app(
        database_url, tmp_path, workflows=WORKFLOWS,
        LLM_PROVIDER="offline", LLM_BASE_URL=openai.url, LLM_API_KEY="sk-test-key",
        LLM_MODEL="fake-model-1", LLM_MAX_RETRIES="0", **env,
    )  # fmt: skip
    async with running(app) as client:
        yield client, Accounts(app, client)


async def _headers(accounts: Accounts, role: Role, tenant: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {await accounts.token(role, tenant)}"}


async def _run(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, data: Any = None
) -> dict[str, Any]:
    run = await trigger_run(client, headers, name, data or {})
    return await finished_run(client, headers, run["workflow_id"])


async def _usage(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    answer = await client.get("/api/v1/usage", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _tokens(status: dict[str, Any]) -> int:
    """What the run's completed steps' outputs say they used (their `usage`, summed)."""
    return int(status["llm_usage"]["total_tokens"])


async def test_a_spent_token_budget_fails_the_next_call_before_any_request(
    database_url: str, tmp_path: Path, openai: FakeOpenAI
) -> None:
    async with _server(database_url, tmp_path, openai, LLM_TOKEN_BUDGET_PER_DAY="30") as (
        client,
        accounts,
    ):
        headers = await _headers(accounts, Role.operator)
        status = await _run(client, headers, "three_chats")  # 18 tokens a call

        steps = steps_of(status)
        assert [steps[s]["status"] for s in ("s0", "s1", "s2")] == [
            "completed", "completed", "failed",
        ]  # fmt: skip
        assert status["status"] == "failed"
        refused = steps["s2"]
        assert refused["attempts"] == 1  # not retried, though its retry policy allows it
        assert refused["error"]["class"] == "llm_budget_exceeded"
        assert refused["error"]["message"] == (
            "the tenant's daily token budget (LLM_TOKEN_BUDGET_PER_DAY = 30) is spent: "
            "36 tokens used today (UTC)"
        )
        assert len(openai.requests) == 2  # the third call was never sent

        again = await _run(client, headers, "chat")
        assert steps_of(again)["s0"]["error"]["class"] == "llm_budget_exceeded"
        assert len(openai.requests) == 2

        usage = await _usage(client, headers)
        assert usage["totals"]["total_tokens"] == _tokens(status) == 36
        assert usage["totals"]["calls"] == 2
        assert usage["budgets"]["tokens"] == {
            "limit": 30, "setting": "LLM_TOKEN_BUDGET_PER_DAY", "used": 36, "remaining": 0,
        }  # fmt: skip
        assert usage["budgets"]["cost_usd"]["limit"] is None


async def test_a_tenants_own_budget_beats_the_servers_and_others_are_unaffected(
    database_url: str, tmp_path: Path, openai: FakeOpenAI
) -> None:
    limited, generous = f"acme-{uuid.uuid4().hex[:8]}", f"beta-{uuid.uuid4().hex[:8]}"
    budgets = json.dumps({
        generous: {"token_budget_per_day": 1_000_000},
        f"absent-{uuid.uuid4().hex[:8]}": {"token_budget_per_day": 0},  # no such tenant
    })  # fmt: skip
    async with _server(database_url, tmp_path, openai, LLM_TOKEN_BUDGET_PER_DAY="1",
                       LLM_TENANT_BUDGETS=budgets) as (client, accounts):  # fmt: skip
        for name in (limited, generous):
            await create_tenant(accounts.db, name)
        acme = await _headers(accounts, Role.operator, limited)
        beta = await _headers(accounts, Role.operator, generous)

        # The offline provider's tokens count too: its first answer spends acme's budget.
        held = await _run(client, acme, "offline_pair")
        free = await _run(client, beta, "offline_pair")

        assert steps_of(held)["s0"]["status"] == "completed"
        assert [m["provider"] for m in held["llm_usage"]["by_model"]] == ["offline"]
        error = steps_of(held)["s1"]["error"]
        assert error["class"] == "llm_budget_exceeded"
        assert "(LLM_TOKEN_BUDGET_PER_DAY = 1) is spent" in error["message"]
        assert free["status"] == "completed", free
        assert openai.requests == []

        acme_usage, beta_usage = await _usage(client, acme), await _usage(client, beta)
        assert acme_usage["totals"]["total_tokens"] == _tokens(held) > 0
        assert acme_usage["totals"]["cost_usd"] == 0  # offline is free
        assert beta_usage["totals"]["total_tokens"] == _tokens(free)
        assert beta_usage["budgets"]["tokens"]["setting"] == (
            f'LLM_TENANT_BUDGETS["{generous}"].token_budget_per_day'
        )
        assert beta_usage["budgets"]["tokens"]["remaining"] == 1_000_000 - _tokens(free)


async def test_a_tenants_zero_budget_stops_its_calls_and_a_cost_budget_counts_dollars(
    database_url: str, tmp_path: Path, openai: FakeOpenAI
) -> None:
    stopped = f"stopped-{uuid.uuid4().hex[:8]}"
    budgets = json.dumps({stopped: {"token_budget_per_day": 0}})
    async with _server(database_url, tmp_path, openai, LLM_COST_BUDGET_PER_DAY="0.0004",
                       LLM_TENANT_BUDGETS=budgets) as (client, accounts):  # fmt: skip
        await create_tenant(accounts.db, stopped)
        headers = await _headers(accounts, Role.operator, stopped)
        status = await _run(client, headers, "chat")
        assert steps_of(status)["s0"]["error"]["message"] == (
            f'the tenant\'s daily token budget (LLM_TENANT_BUDGETS["{stopped}"]'
            ".token_budget_per_day = 0) is spent: 0 tokens used today (UTC)"
        )
        assert openai.requests == []

        # Another tenant has the server's cost budget: $0.00045 spends its $0.0004.
        other = await _headers(accounts, Role.operator)
        openai.reply(Reply("ok", prompt_tokens=1000, completion_tokens=500,
                           model="gpt-4o-mini-2024-07-18"))  # fmt: skip
        first = await _run(client, other, "chat_as", {"model": "gpt-4o-mini"})
        second = await _run(client, other, "chat_as", {"model": "gpt-4o-mini"})
        assert first["status"] == "completed", first
        assert steps_of(second)["s0"]["error"]["message"] == (
            "the tenant's daily cost budget (LLM_COST_BUDGET_PER_DAY = 0.0004 USD) is spent: "
            "0.00045 USD of estimated cost used today (UTC)"
        )
        assert len(openai.requests) == 1
        cost = (await _usage(client, other))["budgets"]["cost_usd"]
        assert cost["used"] == pytest.approx(0.00045)
        assert cost["remaining"] == 0


async def test_usage_totals_match_the_calls_and_a_viewer_reads_them(
    database_url: str, tmp_path: Path, openai: FakeOpenAI
) -> None:
    async with _server(database_url, tmp_path, openai) as (client, accounts):
        tenant = await accounts.tenant()
        operator = await _headers(accounts, Role.operator, tenant)
        viewer = await _headers(accounts, Role.viewer, tenant)
        stranger = await _headers(accounts, Role.admin)

        openai.reply(Reply("hello", prompt_tokens=23, completion_tokens=5))
        chat = await _run(client, operator, "chat")
        answer = '{"order_id": "A-1"}'
        openai.reply(Reply('{"amount": 1}', prompt_tokens=40, completion_tokens=6),
                     Reply(answer, prompt_tokens=60, completion_tokens=9))  # fmt: skip
        extracted = await _run(client, operator, "extract")
        # Both answers break the schema: the attempt fails, having spent 2 calls' tokens; the
        # next attempt is answered.
        openai.reply(Reply("no", prompt_tokens=30, completion_tokens=2),
                     Reply("still no", prompt_tokens=50, completion_tokens=3),
                     Reply(answer, prompt_tokens=20, completion_tokens=4))  # fmt: skip
        retried = await _run(client, operator, "extract")
        openai.reply(Reply("ok", prompt_tokens=1000, completion_tokens=500,
                           model="gpt-4o-mini-2024-07-18"))  # fmt: skip
        priced = await _run(client, operator, "chat_as", {"model": "gpt-4o-mini"})
        for status in (chat, extracted, retried, priced):
            assert status["status"] == "completed", status
        assert steps_of(retried)["s0"]["attempts"] == 2

        usage = await _usage(client, viewer)
        answered = sum(_tokens(status) for status in (chat, extracted, retried, priced))
        assert answered == 28 + 115 + 24 + 1500
        assert usage["totals"] == {
            "calls": 1 + 2 + 3 + 1, "failed_calls": 2,
            "prompt_tokens": 23 + 100 + 100 + 1000, "completion_tokens": 5 + 15 + 9 + 500,
            "total_tokens": answered + 85, "cost_usd": pytest.approx(0.00045),
            "unpriced_calls": 6,
        }  # fmt: skip
        today = datetime.now(UTC).date().isoformat()
        assert (usage["from"], usage["to"]) == (
            (datetime.now(UTC).date() - timedelta(days=29)).isoformat(), today,
        )  # fmt: skip
        assert [(r["day"], r["workflow_name"], r["provider"], r["model"], r["calls"])
                for r in usage["items"]] == [
            (today, "chat", "openai", "fake-model-1", 1),
            (today, "chat_as", "openai", "gpt-4o-mini-2024-07-18", 1),
            (today, "extract", "openai", "fake-model-1", 5),
        ]  # fmt: skip
        assert usage["next_cursor"] is None

        only = await _usage(client, viewer, workflow="extract", **{"from": today, "to": today})
        assert (only["totals"]["calls"], only["totals"]["total_tokens"]) == (5, 115 + 85 + 24)
        model = await _usage(client, viewer, model="gpt-4o-mini-2024-07-18")
        assert model["totals"]["total_tokens"] == 1500
        tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
        assert (await _usage(client, viewer, **{"from": tomorrow, "to": tomorrow}))["items"] == []

        pages, cursor = [], None
        while True:
            page = await _usage(client, viewer, limit=1, **({"cursor": cursor} if cursor else {}))
            pages += page["items"]
            assert page["totals"] == usage["totals"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == usage["items"]

        run = await client.get(f"/api/v1/workflows/{retried['workflow_id']}/usage",
                               headers=viewer)  # fmt: skip
        assert run.status_code == 200, run.text
        assert run.json()["workflow_name"] == "extract"
        assert run.json()["totals"]["calls"] == 3
        assert run.json()["totals"]["total_tokens"] == 85 + 24
        assert [(s["step_id"], s["failed_calls"]) for s in run.json()["steps"]] == [("s0", 2)]

        # Another tenant sees none of it, and none of the tenant's runs.
        assert (await _usage(client, stranger))["totals"]["calls"] == 0
        foreign = await client.get(f"/api/v1/workflows/{chat['workflow_id']}/usage",
                                   headers=stranger)  # fmt: skip
        unknown = await client.get(f"/api/v1/workflows/{uuid.uuid4()}/usage", headers=viewer)
        assert (foreign.status_code, unknown.status_code) == (404, 404)
        assert foreign.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "2026-03-02", "to": "2026-03-01"}, "is after `to`"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "spans more than 366 days"),
        ({"from": "yesterday"}, "must be a date, e.g. 2026-01-31"),
        ({"to": "0"}, "must be a date"),  # not Unix time
        ({"workflow": "Not A Name"}, "pattern"),
        ({"cursor": "bm90IG91cnM"}, "the cursor is not one this server issued"),
        ({"limit": "0"}, "greater than or equal to 1"),
    ],
)
async def test_bad_filters_are_precise_problems(
    database_url: str, tmp_path: Path, openai: FakeOpenAI, params: dict[str, str], says: str
) -> None:
    async with _server(database_url, tmp_path, openai) as (client, accounts):
        headers = await _headers(accounts, Role.viewer)
        answer = await client.get("/api/v1/usage", headers=headers, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says in answer.text
