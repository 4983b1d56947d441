"""Third-party methods plug in through the `spikerl_bench.methods` entry-point group.

Each test writes a throwaway installed package into tmp_path (a module plus a
`NAME-0.1.dist-info/` folder with METADATA and entry_points.txt) and puts it on sys.path, as
`pip install` would; the CLI tests hand it to a fresh interpreter through PYTHONPATH.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from baselines import registry
from baselines.registry import BUILTIN_METHODS, PluginWarning, discover_methods, get_method
from bench.run import store
from spikerl.config import TD3Config
from spikerl.loop import train

REPO = Path(__file__).resolve().parents[1]

TINY_MODULE = '''
"""A third-party method: a tiny MLP actor on raw observations."""
from typing import Any

import torch
import torch.nn as nn

from spikerl.method import ActorContext, MethodSpec
from spikerl.normalizers import IdentityNormalizer, ObsNormalizer


class TinyActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, act_limit: float, hidden: int):
        super().__init__()
        self.act_limit = float(act_limit)
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, act_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.act_limit * torch.tanh(self.net(obs))


def build_actor(ctx: ActorContext) -> nn.Module:
    return TinyActor(ctx.obs_dim, ctx.act_dim, ctx.act_limit, **ctx.params)


def build_normalizer(ctx: ActorContext) -> ObsNormalizer:
    return IdentityNormalizer(ctx.obs_dim)


def actor_params(env_id: str) -> dict[str, Any]:
    return {"hidden": 16}


def td3_params(env_id: str) -> dict[str, Any]:
    return {"lr_actor": 1e-3, "critic_hidden": (32, 32)}


TINY = MethodSpec(name="tiny", summary="Tiny plugin MLP (16 hidden units)", build_actor=build_actor,
                  build_normalizer=build_normalizer, actor_params=actor_params, td3_params=td3_params)
NOT_A_SPEC = {"name": "notaspec"}
'''

PLUGIN_MODULES = ("tinyplugin", "tinyplugin_again")
TINY_BUDGET = {"total_steps": 300, "start_steps": 100, "update_after": 100, "eval_every": 300,
               "eval_episodes": 1, "max_ep_len": 100, "log_every": 300, "checkpoint_every": 0}


def install_plugin(root: Path, dist: str, module: str, entry_points: dict[str, str]) -> Path:
    """Writes `module` and an installed distribution `dist` declaring `entry_points` into root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(TINY_MODULE)
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}")
    return root


def assert_listed_after_builtins(names: list[str], plugin: str) -> None:
    """Built-ins first, in their order, then the plugin (other installed plugins may sit anywhere after)."""
    builtins = [spec.name for spec in BUILTIN_METHODS]
    assert names[:len(builtins)] == builtins and plugin in names[len(builtins):], names


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    """Each test imports its own copy of the plugin modules, from its own tmp_path."""
    yield
    for module in PLUGIN_MODULES:
        sys.modules.pop(module, None)


@pytest.mark.slow
def test_plugin_is_listed_after_the_builtins_and_trains(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(install_plugin(tmp_path / "site", "tinyplugin", "tinyplugin",
                                                   {"tiny": "tinyplugin:TINY"})))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        found = discover_methods()
    assert_listed_after_builtins(list(found.methods), "tiny")
    assert "tiny" not in found.skipped
    spec = found.methods["tiny"]
    assert spec is sys.modules["tinyplugin"].TINY

    result = train(spec, "HalfCheetah-v4", 0, TD3Config(**TINY_BUDGET))
    assert result.status == "complete" and result.steps == 300
    assert result.updates > 0 and result.final_return_mean is not None


def test_bad_plugins_are_skipped_with_one_warning_each(tmp_path, monkeypatch):
    first = install_plugin(tmp_path / "first", "tinyplugin", "tinyplugin", {
        "tiny": "tinyplugin:TINY",
        "mlp": "tinyplugin:TINY",  # a built-in's name
        "broken": "no_such_module:TINY",
        "notaspec": "tinyplugin:NOT_A_SPEC",
        "renamed": "tinyplugin:TINY",  # loads a spec named 'tiny'
    })
    second = install_plugin(tmp_path / "second", "otherplugin", "tinyplugin_again", {"tiny": "tinyplugin_again:TINY"})
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))  # earlier on sys.path: its 'tiny' wins
    with pytest.warns(PluginWarning) as caught:
        found = discover_methods()

    assert_listed_after_builtins(list(found.methods), "tiny")
    assert found.methods["tiny"] is sys.modules["tinyplugin"].TINY
    assert found.methods["mlp"] is get_method("mlp")
    assert "tinyplugin_again" not in sys.modules, "a refused plugin's code must not run"
    expected = {
        "mlp": "already taken by a built-in method",
        "broken": "ModuleNotFoundError",
        "notaspec": "is a dict, not a spikerl.method.MethodSpec",
        "renamed": "named 'tiny'",
        "tiny": "already taken by an earlier plugin",
    }
    assert found.skipped.keys() >= expected.keys()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    for name, why in expected.items():
        assert why in found.skipped[name]
        assert sum(f"'{name}' (" in m and why in m for m in messages) == 1, (name, messages)

    monkeypatch.setattr(registry, "METHODS", found.methods)
    monkeypatch.setattr(registry, "SKIPPED_PLUGINS", found.skipped)
    with pytest.raises(KeyError, match="'broken' .*skipped: loading it raised ModuleNotFoundError"):
        get_method("broken")


def _cli(args: list[str], plugin_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_root), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_lists_and_runs_a_plugin_next_to_a_broken_one(tmp_path):
    site = install_plugin(tmp_path / "site", "tinyplugin", "tinyplugin",
                          {"tiny": "tinyplugin:TINY", "broken": "no_such_module:TINY"})
    listed = _cli(["methods"], site, tmp_path)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert_listed_after_builtins([line.split(":")[0] for line in listed.stdout.splitlines()
                                  if not line.startswith(" ")], "tiny")
    assert "tiny: Tiny plugin MLP (16 hidden units)" in listed.stdout
    assert "  actor (HalfCheetah-v4): hidden=16" in listed.stdout
    assert listed.stderr.count("method plugin 'broken' (no_such_module:TINY, from tinyplugin 0.1) skipped") == 1

    out = tmp_path / "run"
    settings = [f"--set={k}={v}" for k, v in TINY_BUDGET.items() if k != "total_steps"]
    ran = _cli(["run", "--methods", "tiny", "--envs", "HalfCheetah-v4", "--seeds", "0", "--total-steps", "300",
                "--idle-window-s", "0",
                *settings, "--out", str(out), "--plain"], site, tmp_path)
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stderr
    result = store.read_json(store.seed_dir(out, "tiny", "HalfCheetah-v4", 0) / "result.json")
    assert result["status"] == "complete" and result["steps"] == 300
