"""Procedural worlds with known SCMs and true counterfactuals."""

from causaldiff.data.worlds.base import World
from causaldiff.data.worlds.bloom import Bloom
from causaldiff.data.worlds.brain import Brain
from causaldiff.data.worlds.morpho import Morpho
from causaldiff.data.worlds.pendulum import Pendulum
from causaldiff.data.worlds.strokes import Strokes

WORLDS: dict[str, type[World]] = {w.name: w for w in (Pendulum, Morpho, Brain, Strokes, Bloom)}


def get_world(name: str, size: int = 32, **options: float) -> World:
    """Instantiate a world by name (``pendulum``, ``morpho``, ``brain``, ``strokes``, ``bloom``) with its
    ``options`` (e.g. ``lesion_scale=2`` for the brain)."""
    if name not in WORLDS:
        raise ValueError(f"unknown world '{name}' (choose from {', '.join(WORLDS)})")
    return WORLDS[name](size, **options)


__all__ = ["WORLDS", "World", "get_world", "Pendulum", "Morpho", "Brain", "Strokes", "Bloom"]
