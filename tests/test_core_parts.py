"""core/'s parts are composed, not stacked: no class in core/ stands on more than two of core's own classes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import autoresearch.core as core


def _core_classes() -> list[type]:
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(core.__path__):
        module = importlib.import_module(f"autoresearch.core.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__.startswith("autoresearch.core."):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def _core_bases(cls: type) -> list[str]:
    return [c.__qualname__ for c in cls.__mro__[1:] if c.__module__.startswith("autoresearch.core.")]


def test_no_class_in_core_stands_on_more_than_two_of_cores_classes() -> None:
    classes = _core_classes()
    assert len(classes) > 50  # the walk found core's classes
    tall = {f"{c.__module__}.{c.__qualname__}": _core_bases(c) for c in classes if len(_core_bases(c)) > 2}
    assert not tall, tall


def test_the_loop_is_given_its_parts_rather_than_inheriting_them() -> None:
    from autoresearch.core.loop import ExperimentLoop

    assert _core_bases(ExperimentLoop) == ["SessionState"]
    for part in ("workspace", "execution", "measuring", "proposing", "recording", "baseline"):
        source = inspect.getsource(ExperimentLoop.__init__) + inspect.getsource(ExperimentLoop.__mro__[1].__init__)
        assert f"self.{part} = " in source, part
