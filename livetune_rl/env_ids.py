"""Ids of the Gymnasium environments this package registers, importable without Gymnasium.

``import livetune_rl.envs`` registers them (and imports Gymnasium); code that only needs to
name one (``livetune train``'s defaults, the CLI) imports the id from here.

Example::

    >>> HUNGRY_THIRSTY_ID
    'livetune/HungryThirsty-v0'
"""

HUNGRY_THIRSTY_ID = "livetune/HungryThirsty-v0"
"""Singh, Lewis & Barto's Hungry-Thirsty gridworld (:mod:`livetune_rl.envs.hungry_thirsty`)."""
