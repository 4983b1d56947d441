"""How a run's settings are resolved: method recipes, profile budgets and caps, engines, world sizes."""
from __future__ import annotations

import pytest
import torch

import bench.run.resolve as resolve_module
from baselines.registry import get_method
from bench.run.plan import Plan, UsageError
from bench.run.profiles import PROFILES, Profile
from bench.run.resolve import resolve_config, run_engine, world_size_for, world_size_groups
from spikerl import native_lib
from spikerl.method import WorldSize

CPU = torch.device("cpu")


def _plan(**kw) -> Plan:
    base = dict(methods=("spikerl", "popsan", "dsrl", "mlp"), envs=("HalfCheetah-v4",), seeds=(0,),
                profile="quick", total_steps=20_000, device="cpu")
    return Plan(**{**base, **kw})


def test_dsrl_recipe_is_the_original_warm_up():
    td3 = get_method("dsrl").td3_params("Hopper-v4")
    assert (td3["start_steps"], td3["start_actions"], td3["start_noise"], td3["update_after"]) == \
        (1_000, "gaussian", 0.1, 1_000)


def test_profiles_set_budgets_and_only_cap_warm_ups():
    plan = _plan()
    dsrl = resolve_config(get_method("dsrl"), "HalfCheetah-v4", plan, CPU).td3
    popsan = resolve_config(get_method("popsan"), "HalfCheetah-v4", plan, CPU).td3
    # DSRL's 1,000-step Gaussian warm-up survives the quick profile's cap of 2,000 ...
    assert (dsrl.start_steps, dsrl.start_actions, dsrl.update_after) == (1_000, "gaussian", 1_000)
    # ... while PopSAN's 10,000 uniform steps are lowered to it, so learning happens in 20k steps
    assert (popsan.start_steps, popsan.start_actions) == (2_000, "uniform")
    assert dsrl.replay_size == 100_000 and popsan.replay_size == 100_000  # > 20k steps: never fills
    assert dsrl.eval_every == popsan.eval_every == PROFILES["quick"].td3["eval_every"]
    # the user's explicit settings win over both
    explicit = resolve_config(get_method("dsrl"), "HalfCheetah-v4", _plan(td3_overrides={"start_steps": 5_000}), CPU)
    assert explicit.td3.start_steps == 5_000
    with pytest.raises(ValueError, match="outside its budget fields"):
        Profile("bad", "", ("mlp",), ("HalfCheetah-v4",), (0,), {"lr_actor": 1.0})


def test_the_engine_is_resolved_per_method(monkeypatch):
    assert run_engine(get_method("mlp"), "auto", CPU, "fp32") == "torch"  # no spiking layers
    assert run_engine(get_method("popsan"), "torch", CPU, "fp32") == "torch"
    if native_lib.library() is not None:
        assert run_engine(get_method("dsrl"), "auto", CPU, "fp32") == "native"
        assert run_engine(get_method("popsan"), "native", CPU, "fp32") == "native"
        # the kernels run the bf16 recipe too (tests/test_native_bf16.py)
        assert run_engine(get_method("popsan"), "auto", CPU, "bf16") == "native"
        assert run_engine(get_method("spikerl"), "native", CPU, "bf16") == "native"
    with pytest.raises(UsageError, match="CPU only"):
        run_engine(get_method("popsan"), "native", torch.device("cuda"), "fp32")
    monkeypatch.setattr(native_lib, "library", lambda: None)
    monkeypatch.setattr(native_lib, "_reason", "no C compiler found (set CC)")
    assert run_engine(get_method("popsan"), "auto", CPU, "fp32") == "torch"
    with pytest.raises(UsageError, match="no C compiler"):
        run_engine(get_method("popsan"), "native", CPU, "fp32")


def test_spikerl_defaults_to_every_local_gpu(monkeypatch):
    monkeypatch.setattr(WorldSize, "resolve", lambda self: 8 if self is WorldSize.LOCAL_GPUS else 1)
    cuda = torch.device("cuda")
    plan = _plan(device="cuda")
    assert world_size_for(get_method("spikerl"), plan, cuda) == 8
    assert world_size_for(get_method("popsan"), plan, cuda) == 1
    assert world_size_groups(plan, cuda) == {8: ("spikerl",), 1: ("popsan", "dsrl", "mlp")}
    # on a CPU, and whenever --nproc is given, every method gets the same world size
    assert world_size_groups(_plan(), CPU) == {1: ("spikerl", "popsan", "dsrl", "mlp")}
    assert world_size_groups(_plan(device="cuda", nproc=2), cuda) == {2: ("spikerl", "popsan", "dsrl", "mlp")}


def test_auto_gives_every_spiking_method_one_engine(monkeypatch):
    import spikerl.precision as precision

    if native_lib.library() is None:
        pytest.skip("no C compiler: auto is torch for everyone anyway")
    plan = _plan()
    # a CPU without native bf16: SpikeRL's recipe falls back to fp32, so all can run native
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    engines = {m: resolve_config(get_method(m), "HalfCheetah-v4", plan, CPU).engine for m in plan.methods}
    assert engines == {"spikerl": "native", "popsan": "native", "dsrl": "native", "mlp": "torch"}
    # with native bf16 SpikeRL trains in bf16, which the kernels run too: still native for all
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    configs = {m: resolve_config(get_method(m), "HalfCheetah-v4", plan, CPU) for m in plan.methods}
    assert configs["spikerl"].td3.precision == "bf16"
    assert {m: c.engine for m, c in configs.items()} == engines
    # where one spiking method cannot run native, nobody gets it, and asking for it is refused in one line
    def no_bf16(device_type: str, precision: str) -> str | None:
        return "no bf16 here" if precision == "bf16" else None

    monkeypatch.setattr(native_lib, "native_unusable_reason", no_bf16)
    monkeypatch.setattr(resolve_module, "native_unusable_reason", no_bf16)
    configs = {m: resolve_config(get_method(m), "HalfCheetah-v4", plan, CPU) for m in plan.methods}
    assert {m: c.engine for m, c in configs.items()} == {m: "torch" for m in plan.methods}
    assert "spikerl on HalfCheetah-v4 cannot run native" in configs["popsan"].engine_reason
    with pytest.raises(UsageError, match="spikerl: --engine native: no bf16 here"):
        resolve_config(get_method("spikerl"), "HalfCheetah-v4", _plan(engine="native"), CPU)
