"""The deterministic step meter and the typed signals a contract cannot swallow.

A step is charged at every loop iteration, comprehension item, lambda call, generator
resumption and function call (:mod:`.instrument` inserts the charges), and in bulk where a
builtin iterates in C (``range(n)`` costs ``n``, ``itertools.product`` its item count, a
``ctx.scan`` one per item). The count depends only on the contract's code and inputs, never on
wall-clock or CPU time, so every node stops a transaction at the same step.

The hot charge is the C method ``__next__`` of a ``range`` iterator, the cheapest call in
CPython: it raises ``StopIteration`` once ``limit + 1`` steps were taken. That exception can
be caught, but exhaustion is sticky — every later charge raises again, every ``except``
handler re-raises it as :class:`OutOfSteps`, and the executor decides "out of steps" from
the meter's count after the call, whatever the contract did with the signal.
"""

from __future__ import annotations

__all__ = ["Meter", "ContractFault", "OutOfSteps", "DepthExceeded", "StateFault", "DEFAULT_STEP_LIMIT", "DEFAULT_DEPTH_LIMIT"]

DEFAULT_STEP_LIMIT = 5_000_000
DEFAULT_DEPTH_LIMIT = 100


class ContractFault(BaseException):
    """A deterministic run-time refusal (a size limit, a forbidden name reached by aliasing).

    A ``BaseException`` so that ``except Exception`` in a contract does not catch it, and
    re-raised by every instrumented handler, so the transaction fails with ``reason``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutOfSteps(ContractFault):
    def __init__(self) -> None:
        super().__init__("out of steps")


class DepthExceeded(ContractFault):
    def __init__(self, limit: int) -> None:
        super().__init__(f"call depth exceeded (limit {limit})")


class StateFault(BaseException):
    """The node's state or anchored reader failed: no node-local failure may become a result.

    A ``BaseException`` re-raised by every instrumented handler, so no contract can catch
    it; the executor turns it into a :class:`~p2pchain.runtime.records.RuntimeFault`.
    """


class Meter:
    """Steps and call depth of one transaction."""

    __slots__ = ("limit", "depth_limit", "depth", "too_deep", "_steps", "step")

    def __init__(self, limit: int = DEFAULT_STEP_LIMIT, depth_limit: int = DEFAULT_DEPTH_LIMIT) -> None:
        if limit < 0 or depth_limit < 1:
            raise ValueError("limits must be positive")
        self.limit = limit
        self.depth_limit = depth_limit
        self.depth = 0
        self.too_deep = False  # sticky: set once the depth limit was crossed
        self._steps = iter(range(limit + 1))
        #: Charge one step (a C call; raises StopIteration once exhausted).
        self.step = self._steps.__next__

    def reset(self) -> None:
        """Back to no steps used and no depth, for the next transaction (the hooks bound to
        this meter stay valid: the step iterator is rewound, not replaced)."""
        self._steps.__setstate__(0)
        self.depth = 0
        self.too_deep = False

    @property
    def steps_iterator(self):
        """The iterator behind :attr:`step` (for bulk charges on hot paths, see sandbox)."""
        return self._steps

    @property
    def used(self) -> int:
        """Steps charged so far (``limit + 1`` once exhausted)."""
        return self.limit + 1 - self._steps.__length_hint__()

    @property
    def exhausted(self) -> bool:
        # used > limit, i.e. the iterator over range(limit + 1) has nothing left
        return not self._steps.__length_hint__()

    def charge(self, steps: int) -> None:
        """Charge ``steps`` at once (for work a builtin does in C)."""
        used = self.limit + 1 - self._steps.__length_hint__() + (steps if steps > 0 else 0)
        if used > self.limit:
            self._steps.__setstate__(self.limit + 1)
            raise OutOfSteps()
        self._steps.__setstate__(used)

    def enter(self) -> None:
        """Function entry: one step and one level of depth."""
        self.step()
        depth = self.depth + 1
        self.depth = depth
        if depth > self.depth_limit:
            self.too_deep = True
            raise DepthExceeded(self.depth_limit)

    def leave(self, pending: int = 0) -> None:
        """Function exit: one level of depth back, and the steps the function still owed
        (its range loops' lengths, summed locally; see :mod:`.instrument`)."""
        self.depth -= 1
        if pending:
            self.charge(pending)

    def check(self, exc: BaseException) -> None:
        """First statement of every ``except`` handler: re-raise what must not be swallowed."""
        if isinstance(exc, (ContractFault, StateFault, MemoryError, RecursionError)):
            raise exc
        if self.exhausted:
            raise OutOfSteps()
        if self.too_deep:
            raise DepthExceeded(self.depth_limit)
