"""Redfish BIOS settings, through sushy: read them, apply some, reset them to defaults.

Ironic's ``redfish`` bios interface (``drivers/modules/redfish/bios.py``): the node's
``Bios`` resource (``Attributes``), its settings object (``@Redfish.Settings``, where
pending values are PATCHed, with ``@Redfish.SettingsApplyTime`` ``OnReset`` when the BMC
lists it) and its ``AttributeRegistry`` (DMTF ``AttributeRegistry`` schema:
``RegistryEntries.Attributes[]`` with ``AttributeName``, ``Type``, ``ReadOnly``,
``Value[]``, ``LowerBound``/``UpperBound``, ``MinLength``/``MaxLength`` ...).

Clean steps (priority 0, run by manual cleaning; no ramdisk):

* ``apply_configuration(settings=[{"name", "value"}])``: every setting is checked against
  the registry first (unknown to it, read-only, a value outside its enumeration, bounds or
  lengths: the step fails naming each, and nothing is written; without a registry a name
  the BIOS does not have is unknown); settings that already hold their values end the step
  at once; else the pending values are written, the node rebooted (Redfish applies pending
  BIOS settings at the next boot) and the step polled (:data:`~metalplane.drivers.steps.POLL`,
  :meth:`RedfishBios.poll_step`) until the BMC shows the values (when it reports
  ``BootProgress``, once the OS boot has started; failing then if they still differ).
* ``factory_reset``: ``Bios.ResetBios``, then the reboot, polled as above.

Progress between polls lives in ``driver_internal_info["redfish_bios_state"]``
(``{"reboot_requested": true, "requested_bios_attrs"?: {...}}``, Ironic's key). Values are
compared as text (a Boolean ``True`` matches ``"true"``), as BMCs and the conductor's store
keep them. What differs from Ironic: a setting the registry does not know is refused
(Ironic passes it on for the BMC to judge).
"""

from __future__ import annotations

import logging
from typing import Any

import sushy
from sushy import exceptions as sushy_exc

from metalplane.common.exceptions import BMCError
from metalplane.drivers import base
from metalplane.drivers.modules.redfish import RedfishMixin, _system
from metalplane.drivers.steps import DONE, POLL, Step, StepResult, failed

__all__ = ["STATE_KEY", "RedfishBios", "check_settings", "registry_fields", "same_value"]

LOG = logging.getLogger(__name__)
STATE_KEY = "redfish_bios_state"
_OS_STARTED = {sushy.BootProgressStates.OS_BOOT_STARTED, sushy.BootProgressStates.OS_RUNNING}
_INT_FIELDS = ("lower_bound", "upper_bound", "min_length", "max_length")


def same_value(current: Any, wanted: Any) -> bool:
    """Whether a BIOS value read back equals the one asked for, compared as text
    (booleans case-insensitively: BMCs answer ``true``, ``True`` or a JSON boolean)."""
    if current is None or wanted is None:
        return current is wanted
    a, b = str(current), str(wanted)
    if a.lower() in ("true", "false") and b.lower() in ("true", "false"):
        return a.lower() == b.lower()
    return a == b


def registry_fields(entry: dict[str, Any] | None) -> dict[str, Any]:
    """The fields Ironic keeps from one registry entry (``{"AttributeName", "Type",
    "ReadOnly", "Value": [{"ValueName"}], ...}``, DMTF's names): ``attribute_type``,
    ``allowable_values`` (the ``ValueName``s, else ``ValueDisplayName``s), ``lower_bound``,
    ``upper_bound``, ``min_length``, ``max_length``, ``read_only``, ``reset_required``,
    ``unique``; all None without an entry."""
    if entry is None:
        return {k: None for k in ("attribute_type", "allowable_values", "lower_bound",
                                  "upper_bound", "min_length", "max_length", "read_only",
                                  "reset_required", "unique")}
    values = entry.get("Value")
    allowed = ([str(v.get("ValueName") or v.get("ValueDisplayName")) for v in values
                if isinstance(v, dict) and (v.get("ValueName") or v.get("ValueDisplayName"))]
               if isinstance(values, list) else None)
    out: dict[str, Any] = {
        "attribute_type": entry.get("Type"),
        "allowable_values": allowed,
        "lower_bound": entry.get("LowerBound"), "upper_bound": entry.get("UpperBound"),
        "min_length": entry.get("MinLength"), "max_length": entry.get("MaxLength"),
        "read_only": _flag(entry.get("ReadOnly")),
        "reset_required": _flag(entry.get("ResetRequired")),
        "unique": _flag(entry.get("IsSystemUniqueProperty")),
    }
    for key in _INT_FIELDS:
        if not isinstance(out[key], int) or isinstance(out[key], bool):
            out[key] = None
    return out


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def check_settings(settings: Any, registry: dict[str, dict[str, Any]] | None,
                   current: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check ``settings`` (``[{"name": str, "value": ...}]``, the step's argument) against
    the BMC's attribute ``registry`` (``{name: registry entry}`` in DMTF's names, or None
    when the BMC has none) and the ``current`` attributes, before anything is written.

    Returns ``(attributes, problems)``: the Redfish attributes to PATCH (values typed as
    the registry says: Integer as int, Boolean as bool, the rest as given) and a message
    per refused setting, naming it: not a list of name/value pairs, unknown to the registry
    (to the BIOS's current attributes without one), read-only (``ReadOnly`` or
    ``Immutable``), a value outside ``Value[]``, not an integer or outside
    ``LowerBound``/``UpperBound``, not a boolean, or a string outside
    ``MinLength``/``MaxLength``. Any problem: write nothing."""
    if not isinstance(settings, list) or not settings:
        return {}, ['settings must be a non-empty list of {"name": ..., "value": ...}']
    attributes: dict[str, Any] = {}
    problems: list[str] = []
    for i, setting in enumerate(settings):
        if (not isinstance(setting, dict) or set(setting) != {"name", "value"}
                or not isinstance(setting["name"], str) or not setting["name"]):
            problems.append(f'settings[{i}] must be {{"name": <string>, "value": ...}}')
            continue
        name, value = setting["name"], setting["value"]
        if name in attributes:
            problems.append(f"setting '{name}' is given twice")
            continue
        if registry is None:
            if name not in current:
                problems.append(f"setting '{name}' is unknown to the BIOS")
                continue
            attributes[name] = value
            continue
        entry = registry.get(name)
        if entry is None:
            problems.append(f"setting '{name}' is unknown to the BMC's attribute registry")
            continue
        if entry.get("ReadOnly") or entry.get("Immutable"):
            problems.append(f"setting '{name}' is read-only")
            continue
        typed, problem = _typed(name, value, entry)
        if problem:
            problems.append(problem)
        else:
            attributes[name] = typed
    return attributes, problems


def _typed(name: str, value: Any, entry: dict[str, Any]) -> tuple[Any, str]:
    """``value`` as the registry entry's ``Type`` wants it, or a problem naming ``name``."""
    kind = entry.get("Type")
    fields = registry_fields(entry)
    if kind == "Enumeration":
        allowed = fields["allowable_values"]
        if allowed and str(value) not in allowed:
            return None, (f"setting '{name}': '{value}' is not one of "
                          f"{', '.join(allowed)}")
        return str(value), ""
    if kind == "Integer":
        try:
            number = int(str(value))
        except ValueError:
            return None, f"setting '{name}': '{value}' is not an integer"
        low, high = fields["lower_bound"], fields["upper_bound"]
        if (low is not None and number < low) or (high is not None and number > high):
            return None, (f"setting '{name}': {number} is outside "
                          f"[{'' if low is None else low}, {'' if high is None else high}]")
        return number, ""
    if kind == "Boolean":
        if isinstance(value, bool):
            return value, ""
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true", ""
        return None, f"setting '{name}': '{value}' is not true or false"
    if kind == "String":
        text = str(value)
        low, high = fields["min_length"], fields["max_length"]
        if (low is not None and len(text) < low) or (high is not None and len(text) > high):
            return None, (f"setting '{name}': its length {len(text)} is outside "
                          f"[{'' if low is None else low}, {'' if high is None else high}]")
        return text, ""
    return value, ""


def _text(value: Any) -> str | None:
    """A BIOS value as Ironic stores it (a string field)."""
    return None if value is None else str(value)


class RedfishBios(RedfishMixin, base.BiosInterface):
    name = "redfish"

    # -------------------------------------------------------------- reading
    def _bios(self, task: base.Task) -> Any:
        """The system's sushy ``Bios``, or None when the system has none. Raises
        :class:`BMCError`."""
        system = _system(task, self)

        def get() -> Any:
            try:
                return system.bios
            except sushy_exc.MissingAttributeError:
                return None

        return self._call(task, "reading the Bios resource", get)

    def _registry(self, task: base.Task, bios: Any) -> dict[str, dict[str, Any]] | None:
        """``{AttributeName: entry}`` of the BIOS's attribute registry, or None when the BMC
        publishes none (or it cannot be read: logged)."""
        def get() -> Any:
            return bios.get_attribute_registry()

        try:
            registry = self._call(task, "reading the BIOS attribute registry", get)
        except BMCError as exc:
            LOG.info("Node %s: no BIOS attribute registry: %s", task.node.uuid, exc.message)
            return None
        if registry is None or registry.registry_entries is None:
            return None
        entries = registry.registry_entries.attributes or []
        # sushy models each entry; its raw JSON keeps DMTF's names, which the checks use
        raw = registry.json.get("RegistryEntries", {}).get("Attributes", [])
        by_name = {e["AttributeName"]: e for e in raw
                   if isinstance(e, dict) and "AttributeName" in e}
        return {e.name: by_name.get(e.name, {}) for e in entries}

    def get_settings(self, task: base.Task) -> list[dict[str, Any]] | None:
        """The BIOS's current attributes with their registry fields (Ironic's
        ``cache_bios_settings``); None when the system has no Bios resource."""
        bios = self._bios(task)
        if bios is None:
            return None
        attributes = self._call(task, "reading BIOS attributes", lambda: bios.attributes) or {}
        registry = self._registry(task, bios) or {}
        return [{"name": name, "value": _text(value), **registry_fields(registry.get(name))}
                for name, value in sorted(attributes.items())]

    # -------------------------------------------------------------- steps
    def apply_configuration(self, task: base.Task, settings: list[dict[str, Any]]) -> StepResult:
        bios = self._bios(task)
        if bios is None:
            return failed(f"the BMC of node {task.node.uuid} has no BIOS resource")
        current = self._call(task, "reading BIOS attributes", lambda: bios.attributes) or {}
        attributes, problems = check_settings(settings, self._registry(task, bios), current)
        if problems:
            return failed("refused, nothing was written: " + "; ".join(problems))
        pending = self._pending(task, bios)
        if all(same_value(current.get(k), v) and (k not in pending
                                                    or same_value(pending[k], v))
               for k, v in attributes.items()):
            LOG.info("Node %s: the BIOS settings asked for are already set", task.node.uuid)
            return DONE
        apply_time = None
        try:
            if sushy.APPLY_TIME_ON_RESET in (bios.supported_apply_times or []):
                apply_time = sushy.APPLY_TIME_ON_RESET
        except AttributeError:  # no @Redfish.Settings to say
            apply_time = None
        LOG.info("Node %s: writing pending BIOS settings %s", task.node.uuid,
                 ", ".join(sorted(attributes)))
        self._call(task, "writing BIOS settings",
                   lambda: bios.set_attributes(attributes, apply_time=apply_time))
        return self._reboot(task, {"reboot_requested": True,
                                   "requested_bios_attrs": attributes})

    def factory_reset(self, task: base.Task) -> StepResult:
        bios = self._bios(task)
        if bios is None:
            return failed(f"the BMC of node {task.node.uuid} has no BIOS resource")
        LOG.info("Node %s: resetting the BIOS settings to their defaults", task.node.uuid)
        self._call(task, "Bios.ResetBios", bios.reset_bios)
        return self._reboot(task, {"reboot_requested": True})

    # -------------------------------------------------------------- helpers
    def _pending(self, task: base.Task, bios: Any) -> dict[str, Any]:
        def get() -> Any:
            try:
                return bios.pending_attributes
            except (sushy_exc.MissingAttributeError, AttributeError):
                return {}

        found = self._call(task, "reading pending BIOS settings", get)
        return found if isinstance(found, dict) else {}

    def _reboot(self, task: base.Task, state: dict[str, Any]) -> StepResult:
        """Record ``state``, reboot the node so the BIOS applies what is pending, and poll."""
        internal = dict(task.node.driver_internal_info or {})
        internal[STATE_KEY] = state
        task.save(driver_internal_info=internal)
        base.power_action(task, base.REBOOT)
        return POLL

    def poll_step(self, task: base.Task, step: Step) -> StepResult:
        """After the reboot: POLL while the BMC shows the boot not yet at the OS or the
        values not yet applied; then done, or failed naming the settings that did not
        take (the state cleared either way)."""
        internal = dict(task.node.driver_internal_info or {})
        state = internal.pop(STATE_KEY, None)
        if not isinstance(state, dict):
            return failed("no BIOS change is under way to wait for")
        outcome = self._check(task, state)
        if outcome is not POLL:
            task.stage(driver_internal_info=internal)
        return outcome

    def _check(self, task: base.Task, state: dict[str, Any]) -> StepResult:
        system = _system(task, self, max_age=0.0)
        last = None
        if system.boot_progress is not None:
            last = system.boot_progress.last_state
        if last is not None and last not in _OS_STARTED:
            return POLL
        requested = state.get("requested_bios_attrs") or {}
        if requested:
            bios = self._bios(task)
            if bios is None:
                return failed(f"the BMC of node {task.node.uuid} has no BIOS resource")
            self._call(task, "reading BIOS attributes", lambda: bios.refresh(force=True))
            current = bios.attributes or {}
            missing = {k: v for k, v in requested.items() if not same_value(current.get(k), v)}
            if missing:
                if last is None:  # no boot progress to tell: keep looking until the timeout
                    return POLL
                return failed("the BIOS did not take settings "
                              + ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
                              + " after the reboot")
        return DONE
