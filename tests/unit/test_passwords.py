"""The password policy and the hasher's behaviour (cheap parameters: logic, not cost)."""

from __future__ import annotations

import pytest

from workflow_engine.auth.passwords import HashParameters, Passwords, password_problems

CHEAP = HashParameters(time_cost=1, memory_kib=1024, parallelism=1)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 10 characters"),
        ("password", "most common passwords"),
        ("qwertyuiop", "most common passwords"),
        ("alice.smith-rocks-2026", "must not contain the email"),
        ("x" * 1025, "at most 1024 characters"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, problem: str) -> None:
    problems = password_problems(password, "alice.smith@example.com")
    assert any(problem in p for p in problems), problems


def test_a_long_unusual_password_passes() -> None:
    assert password_problems("correct horse battery staple", "alice@example.com") == []


async def test_hash_verifies_only_the_right_password() -> None:
    passwords = Passwords(CHEAP)
    hashed = await passwords.hash("correct horse battery staple")
    assert hashed.startswith("$argon2id$")
    assert await passwords.verify(hashed, "correct horse battery staple")
    assert not await passwords.verify(hashed, "wrong")
    assert not await passwords.verify("not a hash", "anything")


async def test_unknown_user_check_runs_the_dummy_hash_and_fails() -> None:
    passwords = Passwords(CHEAP)
    assert not await passwords.verify(None, "an unguessable placeholder that no account has")


async def test_hashes_with_other_parameters_need_a_rehash() -> None:
    old = await Passwords(CHEAP).hash("correct horse battery staple")
    stronger = Passwords(HashParameters(time_cost=2, memory_kib=2048, parallelism=1))
    assert stronger.needs_rehash(old)
    assert not Passwords(CHEAP).needs_rehash(old)
