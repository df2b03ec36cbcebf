"""Daily LLM budgets: which limits a tenant has, when one is spent, how the settings read."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_engine.config import ConfigError, load_settings
from workflow_engine.usage.budgets import Budgets, Limit, Limits, Spent, dollars


def _budgets(**environ: str) -> Budgets:
    settings, _ = load_settings(environ)
    return Budgets.from_settings(settings)


def test_no_setting_means_no_budget_for_anyone() -> None:
    budgets = _budgets()
    assert budgets.none
    assert budgets.of("acme").unlimited
    assert budgets.of(None).unlimited


def test_the_servers_budgets_apply_to_every_tenant() -> None:
    budgets = _budgets(LLM_TOKEN_BUDGET_PER_DAY="1000", LLM_COST_BUDGET_PER_DAY="2.5")
    assert not budgets.none
    expected = Limits(
        Limit(1000, "LLM_TOKEN_BUDGET_PER_DAY"), Limit(2.5, "LLM_COST_BUDGET_PER_DAY")
    )
    assert budgets.of("acme") == budgets.of(None) == expected


def test_a_tenants_own_budget_overrides_only_what_it_names() -> None:
    budgets = _budgets(
        LLM_TOKEN_BUDGET_PER_DAY="1000",
        LLM_COST_BUDGET_PER_DAY="2.5",
        LLM_TENANT_BUDGETS='{"acme": {"token_budget_per_day": 50}, '
        '"beta": {"cost_budget_per_day": 0}}',
    )
    assert budgets.of("acme") == Limits(
        Limit(50, 'LLM_TENANT_BUDGETS["acme"].token_budget_per_day'),
        Limit(2.5, "LLM_COST_BUDGET_PER_DAY"),
    )
    assert budgets.of("beta").cost_usd == Limit(0, 'LLM_TENANT_BUDGETS["beta"].cost_budget_per_day')
    assert budgets.of("globex").tokens == Limit(1000, "LLM_TOKEN_BUDGET_PER_DAY")


def test_tenant_budgets_alone_limit_only_those_tenants() -> None:
    budgets = _budgets(LLM_TENANT_BUDGETS='{"acme": {"token_budget_per_day": 10}}')
    assert not budgets.none  # a tenant's name must be known to tell
    assert budgets.of("globex").unlimited
    assert not budgets.of("acme").unlimited


def test_tenant_budgets_read_from_toml_tables(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[llm]\ntoken_budget_per_day = 100\n[llm.tenant_budgets."acme"]\n'
        "token_budget_per_day = 5\ncost_budget_per_day = 0.25\n"
    )
    budgets = _budgets(CONFIG_FILE=str(config))
    assert budgets.of("acme") == Limits(
        Limit(5, 'LLM_TENANT_BUDGETS["acme"].token_budget_per_day'),
        Limit(0.25, 'LLM_TENANT_BUDGETS["acme"].cost_budget_per_day'),
    )
    assert budgets.of("other").tokens == Limit(100, "LLM_TOKEN_BUDGET_PER_DAY")


def test_a_budget_is_spent_once_usage_reaches_it() -> None:
    limits = Limits(Limit(100, "LLM_TOKEN_BUDGET_PER_DAY"), Limit(1, "LLM_COST_BUDGET_PER_DAY"))
    assert limits.refusal(Spent(99, 0.999)) is None
    assert limits.refusal(Spent(100, 0)) == (
        "the tenant's daily token budget (LLM_TOKEN_BUDGET_PER_DAY = 100) is spent: "
        "100 tokens used today (UTC)"
    )
    assert limits.refusal(Spent(3, 1.0000004)) == (
        "the tenant's daily cost budget (LLM_COST_BUDGET_PER_DAY = 1 USD) is spent: "
        "1 USD of estimated cost used today (UTC)"
    )


def test_a_zero_budget_refuses_the_first_call() -> None:
    limits = Limits(tokens=Limit(0, "LLM_TOKEN_BUDGET_PER_DAY"))
    assert limits.refusal(Spent()) is not None


def test_costs_read_as_dollars() -> None:
    assert [dollars(x) for x in (0, 5, 0.00045, 1.23456789, 12.5)] == [
        "0", "5", "0.00045", "1.234568", "12.5",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LLM_TOKEN_BUDGET_PER_DAY": "-1"}, "LLM_TOKEN_BUDGET_PER_DAY='-1': "),
        ({"LLM_COST_BUDGET_PER_DAY": "lots"}, "LLM_COST_BUDGET_PER_DAY='lots': "),
        ({"LLM_TENANT_BUDGETS": "acme=5"}, 'expected JSON like {"acme": '),
        ({"LLM_TENANT_BUDGETS": '{"acme": {}}'}, "give token_budget_per_day, cost_budget_per_day"),
        ({"LLM_TENANT_BUDGETS": '{"acme": {"tokens": 5}}'}, "tokens"),
    ],
)
def test_bad_budgets_are_named(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert len(caught.value.problems) == 1
    assert expected in caught.value.problems[0], caught.value.problems[0]
