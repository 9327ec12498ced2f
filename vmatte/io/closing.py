"""A context-manager base for sources and sinks that must release their resource exactly once."""
from __future__ import annotations


class CloseOnce:
    """`with` support and an idempotent close(): the first call runs `_release()`, later calls and
    `__exit__` after an explicit close do nothing."""

    _closed = False

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the resource (once)."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        raise NotImplementedError
