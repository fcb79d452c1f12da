"""The Tiled service's write check is spaced out while it passes (``SpacedCheck``): a
passing check is not repeated within its interval, a failing one is re-run every time."""

from __future__ import annotations

import asyncio

from beampod.services._svc_tiled import SpacedCheck


def test_a_passing_check_is_spaced_and_a_failing_one_is_not() -> None:
    now = [100.0]
    answers = [True, False, False, True]
    calls: list[float] = []

    async def check() -> bool:
        calls.append(now[0])
        return answers[len(calls) - 1]

    spaced = SpacedCheck(check, every_s=15.0, clock=lambda: now[0])

    async def main() -> None:
        assert await spaced()  # first call: checked
        now[0] += 5
        assert await spaced()  # 5 s after a pass: not checked again
        now[0] += 10
        assert not await spaced()  # 15 s after the pass: checked, fails
        now[0] += 5
        assert not await spaced()  # after a failure: checked at once again
        now[0] += 5
        assert await spaced()  # and passes
        now[0] += 5
        assert await spaced()  # spaced again

    asyncio.run(main())
    assert calls == [100.0, 115.0, 120.0, 125.0]
