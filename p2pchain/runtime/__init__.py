"""The contract runtime: validator, meter, sandbox, executor, worker and lifecycle.

See docs/contracts.md for how to write a contract and docs/architecture.md for the modules.
The node calls :class:`ChannelWorker` (one per channel); tests and the simulator may call
:class:`Executor` in-process.
"""

from .executor import Executor, ResourceBreach, compile_contract
from .lifecycle import LIFECYCLE, Definition, LifecycleError, LifecyclePolicy, genesis_writes, make_bundle
from .meter import DEFAULT_DEPTH_LIMIT, DEFAULT_STEP_LIMIT
from .records import (
    AnchoredReader, BlockContext, BlockResult, Invocation, MemoryState, RuntimeFault, StateView,
    TxResult, WorkerFailure,
)
from .validator import ContractRefused, Refusal, validate

__all__ = [
    "Executor", "ResourceBreach", "compile_contract", "LIFECYCLE", "Definition", "LifecycleError",
    "LifecyclePolicy", "genesis_writes", "make_bundle", "DEFAULT_DEPTH_LIMIT", "DEFAULT_STEP_LIMIT",
    "AnchoredReader", "BlockContext", "BlockResult", "Invocation", "MemoryState", "RuntimeFault",
    "StateView", "TxResult", "WorkerFailure", "ContractRefused", "Refusal", "validate",
    "ChannelWorker",
]


def __getattr__(name: str):  # the worker pulls in subprocess; import it only when asked for
    if name == "ChannelWorker":
        from .worker import ChannelWorker
        return ChannelWorker
    raise AttributeError(name)
