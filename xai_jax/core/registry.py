"""The method registry: names -> attribution functions, so the CLI, notebooks and evaluation code
loop over methods without special cases.  Families register their methods at import time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import UnknownNameError, unknown_name_message


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What a caller needs to know to run a method and show its result.

    ``resolution`` is ``"input"`` (a map with ``x``'s shape) or ``"layer"`` (``(B, h, w)`` maps at a
    layer, see :func:`xai_jax.upsample`).  ``signed`` says whether the map has a meaningful sign
    (diverging colormap) or is a magnitude.  ``needs`` lists keyword options the caller must supply
    (e.g. ``("layer",)`` for the CAM family) and ``defaults`` the options a report should use.
    """

    name: str
    fn: Callable[..., Any]
    family: str
    signed: bool = True
    resolution: str = "input"
    needs: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **{**self.defaults, **kwargs})


class Registry(Mapping[str, MethodInfo]):
    """A read-only mapping of method names; :meth:`register` is the only way in."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodInfo] = {}

    def register(
        self,
        name: str,
        *,
        family: str,
        signed: bool = True,
        resolution: str = "input",
        needs: tuple[str, ...] = (),
        defaults: Mapping[str, Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._methods and self._methods[name].fn is not fn:
                raise ValueError(f"method {name!r} is registered twice")
            summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            self._methods[name] = MethodInfo(name, fn, family, signed, resolution, needs, dict(defaults or {}), summary)
            return fn

        return decorate

    def __getitem__(self, name: str) -> MethodInfo:
        try:
            return self._methods[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message("method", name, self._methods)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)


METHODS = Registry()
register = METHODS.register
