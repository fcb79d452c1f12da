"""How often the supervisor checks each service's health, by the size of the pod."""

from __future__ import annotations

from beampod.services._policy import MAX_HEALTH_INTERVAL_S, RestartPolicy, health_interval


def test_a_pod_is_checked_every_5_s_and_a_facility_less_often() -> None:
    base = RestartPolicy().health_interval_s
    assert base == 5.0
    # The demo pod (14 services) and the test facility (11): as always.
    assert health_interval(14) == health_interval(11) == health_interval(16) == base
    # 25 instruments (69 services): every 15 s, not 5 -- a third of the checks.
    assert health_interval(32) == 10.0
    assert health_interval(69) == MAX_HEALTH_INTERVAL_S == 15.0
    assert health_interval(1000) == MAX_HEALTH_INTERVAL_S
    # At least two checks before a failing service is shown degraded.
    assert health_interval(69, degraded_after_s=20.0) == 10.0
    assert health_interval(69, degraded_after_s=4.0) == base  # never faster than the base
