"""The steps of the drivers' interfaces and the step engine that runs them, with a task
double that records what the steps do (power, boot device, network flips) in order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import BMCError, Invalid
from metalplane.conductor.steps import StepEngine, current_step, polling
from metalplane.drivers import base
from metalplane.drivers.modules.agent import AgentDeploy, AgentInspect, IPXEBoot
from metalplane.drivers.modules.fake import (
    FakeBios,
    FakeBoot,
    FakeDeploy,
    FakeInspect,
    FakeManagement,
    FakePower,
)
from metalplane.drivers.steps import (
    DONE,
    POLL,
    WAIT,
    Step,
    StepResult,
    deploy_step,
    failed,
    steps_of,
)
from metalplane.lifecycle import states


def _driver(settings: Settings, deploy: type[base.DeployInterface] = FakeDeploy,
            inspect: type[base.InspectInterface] = FakeInspect,
            boot: type[base.BootInterface] = FakeBoot) -> base.Driver:
    return base.Driver("fake-hardware", FakePower(settings), FakeManagement(settings),
                       boot(settings), deploy(settings), inspect(settings), FakeBios(settings))


class Recorder:
    """A node task (the Task protocol, plus the state machine's process_event and fail)
    whose power, boot device and network changes are logged in order."""

    def __init__(self, settings: Settings, driver: base.Driver, state: str) -> None:
        self.settings = settings
        self.driver = driver
        self.log: list[str] = []
        self.node = SimpleNamespace(uuid="node-1", id=1, provision_state=state,
                                    power_state=base.POWER_ON, driver_internal_info={},
                                    instance_info={}, properties={}, target_power_state=None)
        self.secrets = SimpleNamespace(encrypt=lambda text: f"sealed:{text}")
        self.cache: dict[str, Any] = {}
        log = self.log
        node = self.node
        self.network = SimpleNamespace(
            add_network=lambda _t, kind: log.append(f"on {kind}"),
            remove_network=lambda _t, kind: log.append(f"off {kind}"),
            configure_tenant=lambda _t: log.append(f"tenant (node {node.power_state})"),
            config_drive=lambda _node, _user: {"meta_data": {}})

    @property
    def driver_info(self) -> dict[str, Any]:
        return {}

    def save(self, **fields: Any) -> None:
        if fields.get("power_state") and fields["power_state"] != self.node.power_state:
            self.log.append(fields["power_state"])
        vars(self.node).update(fields)

    stage = save

    def process_event(self, event: str, **fields: Any) -> None:
        self.log.append(f"event {event}")
        self.save(**fields)

    def fail(self, message: str) -> None:
        self.log.append(f"fail: {message}")


def _engine() -> StepEngine:
    return StepEngine(None)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path)


def _labels(found: list[Step]) -> list[str]:
    return [f"{s.label}@{s.priority}" for s in found]


def test_the_steps_of_the_agent_drivers_in_ironic_order(settings: Settings) -> None:
    driver = _driver(settings, deploy=AgentDeploy, inspect=AgentInspect, boot=IPXEBoot)
    assert _labels(StepEngine.available(driver, "deploy")) == [
        "deploy.deploy@100", "deploy.write_image@80", "deploy.prepare_instance_boot@60",
        "deploy.tear_down_agent@40", "deploy.switch_to_tenant_network@30",
        "deploy.boot_instance@20"]
    assert _labels(StepEngine.available(driver, "clean")) == [
        "deploy.erase_devices@10", "bios.apply_configuration@0", "bios.factory_reset@0"]
    assert _labels(StepEngine.available(driver, "inspect")) == ["inspect.inspect_hardware@100"]
    erase = StepEngine.available(driver, "clean")[0]
    assert erase.requires_ramdisk and erase.as_dict() == {
        "interface": "deploy", "step": "erase_devices", "priority": 10, "args": {},
        "argsinfo": {}, "abortable": False, "requires_ramdisk": True}


def test_an_override_keeps_its_step_and_a_new_mark_adds_one(settings: Settings) -> None:
    class Custom(FakeDeploy):
        def boot_instance(self, task: base.Task) -> StepResult:  # unmarked: still the step
            return DONE

        @deploy_step(priority=50, argsinfo={"level": {"description": "x", "required": False}})
        def tune(self, task: base.Task, level: int = 1) -> StepResult:
            return DONE

    assert _labels(steps_of(Custom(settings), "deploy")) == [
        "deploy.boot_instance@20", "deploy.deploy@100", "deploy.switch_to_tenant_network@30",
        "deploy.tune@50"]
    with pytest.raises(ValueError):
        steps_of(Custom(settings), "rescue")


def test_automated_cleaning_runs_the_prioritised_steps_only(settings: Settings) -> None:
    task = Recorder(settings, _driver(settings), states.CLEANING)
    plan = _engine().plan(task, "clean")  # type: ignore[arg-type]
    assert _labels(plan) == ["deploy.erase_devices@10"]


def test_manual_cleaning_checks_the_requested_steps(settings: Settings) -> None:
    task = Recorder(settings, _driver(settings), states.CLEANING)
    engine = _engine()
    bios = [{"name": "hyper_threading_enabled", "value": "False"}]
    plan = engine.plan(task, "clean", [  # type: ignore[arg-type]
        {"interface": "bios", "step": "apply_configuration", "args": {"settings": bios}},
        {"interface": "deploy", "step": "erase_devices"}])
    assert _labels(plan) == ["bios.apply_configuration@0", "deploy.erase_devices@10"]
    assert plan[0].args == {"settings": bios}
    bad = [
        ([{"interface": "bios", "step": "apply_configuration"}],
         "clean_steps[0]: step bios.apply_configuration needs argument(s) settings"),
        ([{"interface": "deploy", "step": "erase_devices"}, {"interface": "raid", "step": "x"}],
         "clean_steps[1]: the node's driver has no clean step 'raid.x'; its clean steps: "
         "deploy.erase_devices, bios.apply_configuration, bios.factory_reset"),
        ([{"interface": "bios", "step": "factory_reset", "args": {"force": True}}],
         "clean_steps[0]: step bios.factory_reset takes no argument(s) force"),
        ([{"interface": "bios", "step": "factory_reset", "when": "now"}],
         "clean_steps[0] has unknown field(s): when"),
        (["erase"], "clean_steps[0] must be an object"),
    ]
    for requested, message in bad:
        with pytest.raises(Invalid) as err:
            engine.plan(task, "clean", requested)  # type: ignore[arg-type]
        assert message in err.value.message


def test_deploy_steps_change_priorities_as_ironic_user_steps(settings: Settings) -> None:
    task = Recorder(settings, _driver(settings), states.DEPLOYING)
    engine = _engine()
    plan = engine.plan(task, "deploy", [  # type: ignore[arg-type]
        {"interface": "deploy", "step": "boot_instance", "args": {}, "priority": 0}])
    assert _labels(plan) == ["deploy.deploy@100", "deploy.switch_to_tenant_network@30"]
    with pytest.raises(Invalid, match=r"deploy_steps\[0\] needs 'priority'"):
        engine.plan(task, "deploy", [  # type: ignore[arg-type]
            {"interface": "deploy", "step": "boot_instance"}])


def test_a_deploy_flips_to_the_tenant_network_with_the_power_off(settings: Settings) -> None:
    task = Recorder(settings, _driver(settings), states.DEPLOYING)
    engine = _engine()
    engine.start(task, "deploy", engine.plan(task, "deploy"))  # type: ignore[arg-type]
    assert task.log == ["on provisioning", base.POWER_OFF, "off provisioning",
                        f"tenant (node {base.POWER_OFF})", base.POWER_ON, "event done"]
    assert task.node.driver_internal_info["configdrive"] == {"meta_data": {}}
    assert "deploy_steps" not in task.node.driver_internal_info  # done: the plan is gone


def test_an_agent_step_waits_and_its_result_goes_to_its_interface(settings: Settings) -> None:
    driver = _driver(settings, deploy=AgentDeploy, boot=IPXEBoot)
    task = Recorder(settings, driver, states.CLEANING)
    engine = _engine()
    engine.start(task, "clean", engine.plan(task, "clean"))  # type: ignore[arg-type]
    assert task.log[-1] == "event wait"
    internal = task.node.driver_internal_info
    assert internal["agent_command"]["name"] == "erase"
    assert internal["clean_step_index"] == 0
    task.node.provision_state = states.CLEAN_WAIT
    assert current_step(task.node)["step"] == "erase_devices"
    task.log.clear()
    engine.agent_result(task, {"status": "failed", "error": "disk busy"})  # type: ignore[arg-type]
    assert task.log == ["fail: clean step 'deploy.erase_devices' failed: the agent's erase "
                        "failed: disk busy"]
    task.log.clear()
    engine.agent_result(task, {"status": "succeeded"})  # type: ignore[arg-type]
    assert task.log == ["event resume", base.POWER_OFF, "off cleaning", "event done"]
    assert "agent_boot" not in task.node.driver_internal_info  # the boot is over


def test_a_step_that_raises_or_fails_names_itself(settings: Settings) -> None:
    class Broken(FakeDeploy):
        def deploy(self, task: base.Task) -> StepResult:
            raise BMCError("the BMC at 10.0.0.9 did not answer")

    class Refusing(FakeDeploy):
        def deploy(self, task: base.Task) -> StepResult:
            return failed("no image")

    for cls, reason in ((Broken, "the BMC at 10.0.0.9 did not answer"),
                        (Refusing, "no image")):
        task = Recorder(settings, _driver(settings, deploy=cls), states.DEPLOYING)
        engine = _engine()
        engine.start(task, "deploy", engine.plan(task, "deploy"))  # type: ignore[arg-type]
        assert task.log == ["on provisioning",
                            f"fail: deploy step 'deploy.deploy' failed: {reason}"]
    assert WAIT.outcome.value == "wait"


def test_a_bios_step_with_malformed_settings_fails_naming_itself(settings: Settings) -> None:
    task = Recorder(settings, _driver(settings), states.CLEANING)
    engine = _engine()
    plan = engine.plan(task, "clean", [  # type: ignore[arg-type]
        {"interface": "bios", "step": "apply_configuration", "args": {"settings": ["ht"]}}])
    engine.start(task, "clean", plan)  # type: ignore[arg-type]
    assert task.log[-1].startswith("fail: clean step 'bios.apply_configuration' failed: "
                                   "settings must be a list")
    assert task.node.driver_internal_info["clean_step_index"] == 0  # kept for the operator


def test_a_polled_step_waits_until_its_interface_says_it_is_over(settings: Settings) -> None:
    """A step that POLLs leaves the node waiting, flagged; each poll asks the interface,
    without a state change while it is not over; then the next steps run."""
    class SlowBios(FakeBios):
        answers = [POLL, DONE]

        def apply_configuration(self, task: base.Task, settings: Any) -> StepResult:
            return POLL

        def poll_step(self, task: base.Task, step: Step) -> StepResult:
            assert step.label == "bios.apply_configuration"
            return self.answers.pop(0)

    driver = base.Driver("fake-hardware", FakePower(settings), FakeManagement(settings),
                         FakeBoot(settings), FakeDeploy(settings), FakeInspect(settings),
                         SlowBios(settings))
    task = Recorder(settings, driver, states.CLEANING)
    engine = _engine()
    plan = engine.plan(task, "clean", [  # type: ignore[arg-type]
        {"interface": "bios", "step": "apply_configuration", "args": {"settings": []}},
        {"interface": "bios", "step": "factory_reset"}])
    engine.start(task, "clean", plan)  # type: ignore[arg-type]
    assert task.log == ["on cleaning", "event wait"]
    task.node.provision_state = states.CLEAN_WAIT
    assert polling(task.node) and task.node.driver_internal_info["clean_step_index"] == 0
    task.log.clear()
    engine.poll(task)  # type: ignore[arg-type]
    assert task.log == [] and polling(task.node)  # not yet: nothing changes
    engine.poll(task)  # type: ignore[arg-type]
    assert task.log == ["event resume", "off cleaning", "event done"]  # factory_reset ran
    assert "cleaning_polling" not in task.node.driver_internal_info


def test_a_polled_step_that_fails_names_itself(settings: Settings) -> None:
    class FailingBios(FakeBios):
        def factory_reset(self, task: base.Task) -> StepResult:
            return POLL

        def poll_step(self, task: base.Task, step: Step) -> StepResult:
            return failed("the BIOS did not take it")

    driver = base.Driver("fake-hardware", FakePower(settings), FakeManagement(settings),
                         FakeBoot(settings), FakeDeploy(settings), FakeInspect(settings),
                         FailingBios(settings))
    task = Recorder(settings, driver, states.CLEANING)
    engine = _engine()
    engine.start(task, "clean", engine.plan(  # type: ignore[arg-type]
        task, "clean", [{"interface": "bios", "step": "factory_reset"}]))  # type: ignore[arg-type]
    task.node.provision_state = states.CLEAN_WAIT
    task.log.clear()
    engine.poll(task)  # type: ignore[arg-type]
    assert task.log == ["fail: clean step 'bios.factory_reset' failed: the BIOS did not "
                        "take it"]
