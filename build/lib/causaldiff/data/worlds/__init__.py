"""Procedural worlds with known SCMs and true counterfactuals."""

from causaldiff.data.worlds.base import World
from causaldiff.data.worlds.brain import Brain
from causaldiff.data.worlds.morpho import Morpho
from causaldiff.data.worlds.pendulum import Pendulum

WORLDS: dict[str, type[World]] = {w.name: w for w in (Pendulum, Morpho, Brain)}


def get_world(name: str, size: int = 32) -> World:
    """Instantiate a world by name (``pendulum``, ``morpho``, ``brain``)."""
    if name not in WORLDS:
        raise ValueError(f"unknown world '{name}' (choose from {', '.join(WORLDS)})")
    return WORLDS[name](size)


__all__ = ["WORLDS", "World", "get_world", "Pendulum", "Morpho", "Brain"]
