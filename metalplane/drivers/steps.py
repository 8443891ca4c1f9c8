"""Steps: the ordered units of work of inspecting, cleaning and deploying a node.

As Ironic's ``clean_step`` / ``deploy_step`` decorators (``ironic/drivers/base.py``): a
driver interface marks some of its methods as steps of a *phase* (``inspect``, ``clean``,
``deploy``) with a priority and, for steps that take arguments, an ``argsinfo``. The
conductor's step engine (:mod:`metalplane.conductor.steps`) collects the steps of a node's
interfaces, runs those with a non-zero priority from the highest down (a manual cleaning
runs the steps the user named, in the user's order) and records the list and the current
index in ``driver_internal_info`` (``clean_steps``/``clean_step_index`` …, Ironic's keys).

A step is called as ``method(task, **args)`` and returns a :class:`StepResult`:

* :data:`DONE`: go on with the next step;
* :data:`WAIT`: the node will call back (the ramdisk agent runs a command); the node sits
  in its wait state and the agent's result goes to the interface that owns the step,
  through :meth:`metalplane.drivers.base.BaseInterface.agent_result`;
* :data:`POLL`: wait for the BMC (an asynchronous job, such as BIOS settings that apply at
  the next boot); the node sits in its wait state and the conductor calls the owning
  interface's :meth:`~metalplane.drivers.base.BaseInterface.poll_step` every
  ``step_poll_interval`` s, as Ironic's periodic checks of such steps do, until it returns
  anything but POLL (the wait state's timeout still applies); DONE goes on with the next
  step. The step keeps what the poll needs in ``driver_internal_info``;
* :func:`failed` with a reason: the node fails, with a ``last_error`` naming the step.

Errors a step does not expect (a BMC that stops answering) still raise
:class:`~metalplane.common.exceptions.MetalplaneError`; the engine turns them into a failed
step at one place, so they end the flow the same way.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "DONE",
    "PHASES",
    "POLL",
    "WAIT",
    "Outcome",
    "Step",
    "StepResult",
    "clean_step",
    "deploy_step",
    "done_with",
    "failed",
    "inspect_step",
    "steps_of",
]

PHASES = ("inspect", "clean", "deploy")
F = TypeVar("F", bound=Callable[..., Any])
_MARK = "_metalplane_steps"


class Outcome(enum.Enum):
    DONE = "done"
    WAIT = "wait"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What a step did. ``reason`` says why it failed; ``poll``: a WAIT that the conductor
    ends by polling the step (:data:`POLL`); ``data`` carries what an inspect
    step learned (:class:`metalplane.drivers.base.InspectionResult`) for the engine to
    store."""

    outcome: Outcome
    reason: str = ""
    data: Any = None
    poll: bool = False  # WAIT only: the conductor polls the step (POLL)


DONE = StepResult(Outcome.DONE)
WAIT = StepResult(Outcome.WAIT)
POLL = StepResult(Outcome.WAIT, poll=True)


def done_with(data: Any) -> StepResult:
    """A finished step that hands ``data`` (an inspection's findings) to the engine."""
    return StepResult(Outcome.DONE, data=data)


def failed(reason: str) -> StepResult:
    """A failed step; ``reason`` goes into the node's ``last_error`` after the step's name."""
    return StepResult(Outcome.FAILED, reason=reason)


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of one interface, in Ironic's shape once :meth:`as_dict`'ed:
    ``{"interface", "step", "priority", "args", "argsinfo", "abortable",
    "requires_ramdisk"}``.

    ``priority``: 0 runs only when asked for (manual cleaning, ``deploy_steps``); otherwise
    higher runs first. ``argsinfo`` maps each argument to ``{"description": str,
    "required": bool}``. ``requires_ramdisk``: the step needs the agent running (the
    phase boots it first)."""

    interface: str
    step: str
    priority: int
    args: dict[str, Any] = dataclasses.field(default_factory=dict)
    argsinfo: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    abortable: bool = False
    requires_ramdisk: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"interface": self.interface, "step": self.step, "priority": self.priority,
                "args": dict(self.args), "argsinfo": dict(self.argsinfo),
                "abortable": self.abortable, "requires_ramdisk": self.requires_ramdisk}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    @property
    def label(self) -> str:
        """``interface.step``, as logs and ``last_error`` name it."""
        return f"{self.interface}.{self.step}"


@dataclasses.dataclass(frozen=True)
class _Mark:
    phase: str
    priority: int
    argsinfo: dict[str, dict[str, Any]]
    abortable: bool
    requires_ramdisk: bool


def _marker(phase: str) -> Callable[..., Callable[[F], F]]:
    def decorator(priority: int, argsinfo: dict[str, dict[str, Any]] | None = None,
                  abortable: bool = False, requires_ramdisk: bool = False
                  ) -> Callable[[F], F]:
        if priority < 0:
            raise ValueError(f"a {phase} step's priority must be >= 0, not {priority}")

        def mark(fn: F) -> F:
            marks = [*getattr(fn, _MARK, ()), _Mark(phase, priority, dict(argsinfo or {}),
                                                    abortable, requires_ramdisk)]
            setattr(fn, _MARK, tuple(marks))
            return fn
        return mark
    decorator.__name__ = f"{phase}_step"
    decorator.__doc__ = (f"Mark an interface method as a {phase} step of ``priority`` "
                         f"(see :class:`Step` for the other fields).")
    return decorator


clean_step = _marker("clean")
deploy_step = _marker("deploy")
inspect_step = _marker("inspect")


def steps_of(iface: Any, phase: str) -> list[Step]:
    """The ``phase`` steps of interface object ``iface``: its class's marked methods. A
    method that overrides a step without a mark of its own keeps the mark of the class it
    overrides (an implementation of a base class's step stays that step). Unordered.
    Raises :class:`ValueError` for an unknown phase."""
    if phase not in PHASES:
        raise ValueError(f"phase '{phase}' is not one of {', '.join(PHASES)}")
    key = (type(iface), phase)
    if key not in _CACHE:
        _CACHE[key] = _class_steps(type(iface), phase)
    return list(_CACHE[key])


_CACHE: dict[tuple[type, str], tuple[Step, ...]] = {}


def _class_steps(cls: type, phase: str) -> tuple[Step, ...]:
    found = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        marks: tuple[_Mark, ...] = ()
        for klass in cls.__mro__:
            marks = getattr(klass.__dict__.get(name), _MARK, ())
            if marks:
                break
        for mark in marks:
            if mark.phase == phase:
                found.append(Step(getattr(cls, "kind", ""), name, mark.priority, {},
                                  mark.argsinfo, mark.abortable, mark.requires_ramdisk))
    return tuple(found)
