"""Helpers shared by the SB3 tests (imported by them; not a test module)."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback


class AtStep(BaseCallback):
    """Runs ``action(callback)`` once, when ``num_timesteps`` first reaches ``step``."""

    def __init__(self, step: int, action: Any) -> None:
        super().__init__()
        self.step, self.action, self.done = step, action, False

    def _on_step(self) -> bool:
        if not self.done and self.num_timesteps >= self.step:
            self.done = True
            self.action(self)
        return True
