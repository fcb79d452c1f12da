"""A motor-record-like simulated motor that ophyd can drive with put-completion.

caproto's ``fake_motor_record`` example runs the motion in a background loop polled
at 10 Hz with a default velocity of 0.1 units/s: a 25-point scan over -10..10 then
takes minutes and a put never completes when the motion does. Here the motion runs
*inside* the putter of ``.VAL``, so

- a CA put with callback (``EpicsSignal.set``, ``caput -c``) completes when the
  motor arrives, and
- ``.DMOV`` goes 1 -> 0 -> 1 around every move, which is what ``ophyd.EpicsMotor``
  waits on (its move status finishes on the 0 -> 1 transition).

Fields served: every field of caproto's motor record (``.RBV .DRBV .RRBV .DMOV .MOVN
.STOP .VELO .ACCL .HLM .LLM .HLS .LLS .TDIR .EGU ...``); the simulation keeps the ones
ophyd reads consistent.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from caproto.server import PVGroup, pvproperty
from caproto.server.records import MotorFields

DEFAULT_VELOCITY = 40.0  # units/s: a 25-point scan over -10..10 moves in well under a second
DEFAULT_TICK_HZ = 50.0
DEFAULT_LIMITS = (-100.0, 100.0)
_SETTLE_S = 0.005


class SimMotor(PVGroup):
    """One simulated motor. Its PV is the group prefix itself (``<prefix>`` = ``.VAL``)."""

    motor = pvproperty(value=0.0, name="", record="motor", precision=3, doc="Simulated motor")

    def __init__(
        self,
        *args: Any,
        velocity: float = DEFAULT_VELOCITY,
        limits: tuple[float, float] = DEFAULT_LIMITS,
        tick_rate_hz: float = DEFAULT_TICK_HZ,
        egu: str = "mm",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._velocity = velocity
        self._limits = limits
        self._tick = 1.0 / tick_rate_hz
        self._egu = egu
        # Bumped by every new target: a running move that sees a newer id stops
        # driving and leaves the rest of the motion to the newer put (retargeting).
        self._move_id = 0

    @property
    def readback(self) -> float:
        fields: MotorFields = self.motor.field_inst
        return float(fields.user_readback_value.value)

    @motor.startup  # type: ignore[no-redef]
    async def motor(self, instance: Any, async_lib: Any) -> None:
        fields: MotorFields = instance.field_inst
        low, high = self._limits
        await fields.velocity.write(self._velocity)
        await fields.max_velocity.write(self._velocity * 10)
        await fields.seconds_to_velocity.write(0.0)
        await fields.motor_step_size.write(1e-6)
        await fields.user_low_limit.write(low)
        await fields.user_high_limit.write(high)
        await fields.dial_low_limit.write(low)
        await fields.dial_high_limit.write(high)
        await fields.engineering_units.write(self._egu)
        await fields.done_moving_to_value.write(1)
        await fields.motor_is_moving.write(0)
        # ophyd's EpicsMotor.limits come from the control limits of .VAL.
        await instance.write_metadata(
            lower_ctrl_limit=low,
            upper_ctrl_limit=high,
            lower_disp_limit=low,
            upper_disp_limit=high,
            units=self._egu,
        )
        # Readers such as LiveTable take the display precision from .RBV, not .VAL.
        for prop in fields.pvdb.values():
            if hasattr(prop, "precision"):
                await prop.write_metadata(precision=instance.precision)
        await fields.user_readback_value.write(float(instance.value))
        await fields.dial_readback_value.write(float(instance.value))

    @motor.putter  # type: ignore[no-redef]
    async def motor(self, instance: Any, value: float) -> float:
        fields: MotorFields = instance.field_inst
        low, high = float(fields.user_low_limit.value), float(fields.user_high_limit.value)
        if low < high and not low <= value <= high:
            # A real motor record refuses silently (LVIO); a put error is more useful here.
            await fields.limit_violation.write(1)
            raise ValueError(f"{value} is outside the soft limits [{low}, {high}]")
        await fields.limit_violation.write(0)
        self._move_id += 1
        my_id = self._move_id
        # Show the new target on .VAL at once, like the motor record does.
        await instance.write(value, verify_value=False)
        return await self._drive(fields, float(value), my_id)

    async def _drive(self, fields: MotorFields, target: float, my_id: int) -> float:
        start = self.readback
        await fields.stop.write(0)
        await fields.direction_of_travel.write(1 if target >= start else 0)
        await fields.done_moving_to_value.write(0)
        await fields.motor_is_moving.write(1)
        position = start
        stopped = False
        while True:
            if my_id != self._move_id:
                # A newer put took over; it finishes the motion and the done flags.
                return target
            if fields.stop.value != 0:
                stopped = True
                break
            velocity = abs(float(fields.velocity.value)) or self._velocity
            step = velocity * self._tick
            remaining = target - position
            if abs(remaining) <= step:
                position = target
            else:
                position += math.copysign(step, remaining)
            await self._set_readback(fields, position)
            if position == target:
                break
            await asyncio.sleep(self._tick)
        await fields.stop.write(0)
        await fields.motor_is_moving.write(0)
        await fields.done_moving_to_value.write(1)
        # Monitor updates leave through caproto's subscription queue, the put reply
        # directly; a short settle lets a client that waited on put-completion already
        # hold the final .RBV from its monitor.
        await asyncio.sleep(_SETTLE_S)
        # After a stop the motor record sets .VAL to where the motor is.
        return position if stopped else target

    async def _set_readback(self, fields: MotorFields, position: float) -> None:
        await fields.user_readback_value.write(position)
        await fields.dial_readback_value.write(position)
        await fields.raw_readback_value.write(round(position / 1e-6))
