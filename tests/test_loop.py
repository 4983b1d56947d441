"""The shared training loop: schedule, bootstrapping, reproducibility, checkpoint and resume."""
import numpy as np
import pytest
from harness_helpers import tiny_config

from baselines.registry import get_method
from spikerl.callbacks import Callback
from spikerl.checkpoint import CheckpointError, load_checkpoint
from spikerl.envs import make_env
from spikerl.evaluation import eval_episode_seeds, run_episodes
from spikerl.loop import train

MLP = get_method("mlp")


@pytest.mark.slow
def test_update_schedule_and_budget(tmp_path):
    cfg = tiny_config(checkpoint_every=0)
    res = train(MLP, "HalfCheetah-v4", 0, cfg, {"hidden": (32, 32)})
    # update phases at t = 300, 350, ..., 1200: 19 phases of update_every (50) gradient steps
    assert res.updates == 19 * 50
    assert res.steps == 1_200
    assert [e.step for e in res.evals] == [600, 1_200]


@pytest.mark.slow
def test_same_seed_is_bit_identical_and_seed_matters():
    cfg = tiny_config(checkpoint_every=0, total_steps=700)
    a = train(MLP, "HalfCheetah-v4", 3, cfg, {"hidden": (32, 32)})
    b = train(MLP, "HalfCheetah-v4", 3, cfg, {"hidden": (32, 32)})
    c = train(MLP, "HalfCheetah-v4", 4, cfg, {"hidden": (32, 32)})
    assert a.param_sha256 == b.param_sha256
    assert [e.returns for e in a.evals] == [e.returns for e in b.evals]
    assert a.param_sha256 != c.param_sha256


def test_truncation_is_stored_as_non_terminal(tmp_path):
    # HalfCheetah never terminates: its 200-step episodes end by time limit only
    cfg = tiny_config(total_steps=800, checkpoint_every=800)
    train(MLP, "HalfCheetah-v4", 0, cfg, {"hidden": (32, 32)}, run_dir=tmp_path)
    replay = load_checkpoint(tmp_path / "checkpoint.pt")["replay"]
    assert replay["size"] == 800
    assert replay["terminated"].sum().item() == 0


def test_termination_is_stored_as_terminal(tmp_path):
    # Hopper falls over under random actions within a few dozen steps: a true terminal state
    cfg = tiny_config(total_steps=400, start_steps=400, update_after=400, checkpoint_every=400, eval_every=400)
    train(MLP, "Hopper-v4", 0, cfg, {"hidden": (32, 32)}, run_dir=tmp_path)
    term = load_checkpoint(tmp_path / "checkpoint.pt")["replay"]["terminated"]
    assert term.sum().item() >= 2


@pytest.mark.parametrize("kind, std", [("gaussian", 0.1), ("uniform", 1 / np.sqrt(3))])
def test_warm_up_actions_follow_the_recipe(tmp_path, kind, std):
    # DSRL's original code warms up with N(0, 0.1) actions; TD3's default is uniform over [-1, 1]
    cfg = tiny_config(total_steps=400, start_steps=400, update_after=400, checkpoint_every=400, eval_every=400,
                      start_actions=kind)
    train(MLP, "HalfCheetah-v4", 0, cfg, {"hidden": (32, 32)}, run_dir=tmp_path)
    actions = load_checkpoint(tmp_path / "checkpoint.pt")["replay"]["act"][:400].numpy()
    assert actions.shape == (400, 6)
    assert abs(actions.mean()) < 0.03 * std * 10 and actions.std() == pytest.approx(std, rel=0.06)
    assert np.abs(actions).max() <= 1.0


class CrashAt(Callback):
    key = "crash"

    def __init__(self, step):
        self.step = step

    def on_progress(self, event):
        if event.step == self.step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("method", ["mlp", "popsan"])
@pytest.mark.slow
def test_resume_after_crash_matches_uninterrupted(tmp_path, method):
    spec = get_method(method)
    params = {"hidden": (32, 32)} if method == "mlp" else {**spec.actor_params("Hopper-v4"), "hidden": (32, 32)}
    # checkpoint at 400 lands mid-episode (episodes end at 150 or on a fall): env state must resume exactly
    cfg = tiny_config(total_steps=900, max_ep_len=150, checkpoint_every=400, eval_every=450)
    full = train(spec, "Hopper-v4", 1, cfg, params, run_dir=tmp_path / "a")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(spec, "Hopper-v4", 1, cfg, params, run_dir=tmp_path / "b", callbacks=[CrashAt(700)])
    resumed = train(spec, "Hopper-v4", 1, cfg, params, run_dir=tmp_path / "b", resume=True)
    assert resumed.param_sha256 == full.param_sha256
    assert resumed.final_return_mean == full.final_return_mean
    assert resumed.updates == full.updates


def test_corrupt_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError):
        train(MLP, "HalfCheetah-v4", 0, tiny_config(), {"hidden": (32, 32)}, run_dir=tmp_path, resume=True)


def test_resume_refuses_another_methods_checkpoint(tmp_path):
    cfg = tiny_config(total_steps=400, checkpoint_every=400, eval_every=400)
    train(get_method("popsan"), "HalfCheetah-v4", 0, cfg, run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="written by popsan/HalfCheetah-v4 at world size 1, not mlp"):
        train(MLP, "HalfCheetah-v4", 0, cfg, {"hidden": (32, 32)}, run_dir=tmp_path, resume=True)


def test_evaluation_uses_fixed_seeds():
    assert eval_episode_seeds(0, 3) == eval_episode_seeds(0, 3)
    assert eval_episode_seeds(0, 3) != eval_episode_seeds(1, 3)
    env = make_env("Hopper-v4", max_ep_len=50)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(11, 3))
    policy = lambda o: np.tanh(o @ w)  # noqa: E731
    seeds = eval_episode_seeds(0, 3)
    assert run_episodes(env, policy, seeds) == run_episodes(env, policy, seeds)
