"""Checkpoint files, the one resume check, and the loop state they carry."""
import time

import numpy as np
import pytest
import torch

from spikerl.checkpoint import (
    CheckpointError,
    checkpoint_path,
    complete_checkpoint_step,
    load_checkpoint,
    prune_checkpoints,
    resume_step,
    save_checkpoint,
)
from spikerl.loop_state import LoopState


def _write(run_dir, rank, world_size, step, method="mlp", env_id="Hopper-v4"):
    save_checkpoint(checkpoint_path(run_dir, rank, world_size, step),
                    {"method": method, "env_id": env_id, "world_size": world_size, "rank": rank})


def test_no_folder_or_no_checkpoint_is_a_fresh_start(tmp_path):
    assert resume_step(tmp_path / "missing", 1, method="mlp", env_id="Hopper-v4") is None
    (tmp_path / "progress.csv").write_text("step\n")
    assert resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4") is None


def test_one_process_resumes_from_its_checkpoint(tmp_path):
    _write(tmp_path, 0, 1, 0)
    assert resume_step(tmp_path, 1, method="mlp", env_id="Hopper-v4") == 0


def test_latest_complete_set_wins_and_pruning_keeps_it(tmp_path):
    for rank in range(2):
        _write(tmp_path, rank, 2, 400)
    _write(tmp_path, 0, 2, 800)  # rank 1 died while saving step 800
    assert complete_checkpoint_step(tmp_path, 2) == 400
    assert resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4") == 400
    _write(tmp_path, 1, 2, 800)
    for rank in range(2):
        prune_checkpoints(tmp_path, rank, 2, keep_step=800)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint.step800.rank0.pt",
                                                             "checkpoint.step800.rank1.pt"]
    assert resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4") == 800


@pytest.mark.parametrize("written, resumed", [(1, 2), (2, 1), (4, 2)])
def test_another_world_size_is_refused(tmp_path, written, resumed):
    for rank in range(written):
        _write(tmp_path, rank, written, 400)
    for load in (True, False):
        with pytest.raises(CheckpointError, match="another world size"):
            resume_step(tmp_path, resumed, method="mlp", env_id="Hopper-v4", load=load)


def test_an_incomplete_set_is_refused(tmp_path):
    _write(tmp_path, 1, 2, 400)
    with pytest.raises(CheckpointError, match="incomplete set"):
        resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4", load=False)


@pytest.mark.parametrize("method, env_id", [("popsan", "Hopper-v4"), ("mlp", "HalfCheetah-v4")])
def test_another_method_or_env_is_refused_when_loading(tmp_path, method, env_id):
    _write(tmp_path, 0, 2, 400)
    _write(tmp_path, 1, 2, 400, method=method, env_id=env_id)  # rank 1 of another run
    assert resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4", load=False) == 400  # names only
    with pytest.raises(CheckpointError, match=f"rank1.pt was written by {method}/{env_id}"):
        resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4")


def test_an_unreadable_rank_file_is_refused_when_loading(tmp_path):
    _write(tmp_path, 0, 2, 400)
    checkpoint_path(tmp_path, 1, 2, 400).write_bytes(b"half a checkpoint")
    assert resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4", load=False) == 400
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        resume_step(tmp_path, 2, method="mlp", env_id="Hopper-v4")


def test_another_format_is_refused_with_its_version(tmp_path):
    torch.save({"format_version": 1, "method": "mlp"}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="format 1"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_loop_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    rng = np.random.default_rng(5)
    state = LoopState(obs=np.array([0.5, -1.25, 3.0]), explore_rng=rng, t=1234, episodes=6, ep_ret=-17.5,
                      last_train_return=42.0, best_eval=50.5, final_eval=48.0, last_eval_step=1000,
                      pending_obs=[np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])], wall_before_s=100.0)
    rng.normal(size=3)  # the generator's position is part of the state
    save_checkpoint(tmp_path / "checkpoint.pt", {"loop": state.state_dict()})
    loaded = LoopState(obs=np.zeros(3), explore_rng=np.random.default_rng(0))
    loaded.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt")["loop"])  # weights_only=True inside
    for name in ("t", "episodes", "ep_ret", "last_train_return", "best_eval", "final_eval", "last_eval_step"):
        assert getattr(loaded, name) == getattr(state, name), name
    assert np.array_equal(loaded.obs, state.obs)
    assert np.array_equal(np.stack(loaded.pending_obs), np.stack(state.pending_obs))
    assert np.array_equal(loaded.explore_rng.normal(size=4), state.explore_rng.normal(size=4))
    assert 100.0 <= loaded.wall_before_s < state.wall_s() < 100.0 + 60
    before = loaded.wall_s()
    time.sleep(0.01)
    assert loaded.wall_s() > before  # the clock runs on from where the checkpoint left it


def test_loop_state_with_nothing_pending(tmp_path):
    state = LoopState(obs=np.ones(4), explore_rng=np.random.default_rng(0))
    loaded = LoopState(obs=np.zeros(4), explore_rng=np.random.default_rng(1))
    loaded.load_state_dict(state.state_dict())
    assert loaded.pending_obs == [] and loaded.last_train_return is None and loaded.last_eval_step == -1
