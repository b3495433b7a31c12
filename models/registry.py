"""Registry of model builders, keyed by the config's `modelname`."""
from typing import Callable, Dict, List


class Registry:
    def __init__(self, name: str):
        self.name = name
        self._builders: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def wrap(fn: Callable) -> Callable:
            if name in self._builders:
                raise KeyError(f"{self.name}: '{name}' is registered twice")
            self._builders[name] = fn
            return fn
        return wrap

    def get(self, name: str) -> Callable:
        if name not in self._builders:
            raise ValueError(f"modelname={name!r} is not known; available: {', '.join(self.names())}")
        return self._builders[name]

    def names(self) -> List[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders


MODULE_BUILD_FUNCS = Registry("models")
