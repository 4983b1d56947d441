"""Data parallelism on CPU with Gloo and 2 ranks: the ranks really average and stay in sync."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import dist_workers as W
import numpy as np
import psutil
import pytest
import torch
import torch.multiprocessing as mp

from baselines.registry import get_method
from bench.run.launch import free_port
from spikerl.checkpoint import load_checkpoint
from spikerl.distributed import detect_launch, first_slurm_host, split_budget

ARGS = ["--total-steps", "1001", "--plain", "--set", "start_steps=200", "--set", "update_after=200",
        "--set", "eval_every=500", "--set", "eval_episodes=2", "--set", "checkpoint_every=300",
        "--set", "log_every=100", "--set", "max_ep_len=200", "--set", "critic_hidden=32,32",
        "--set", "actor.hidden=32,32", "--idle-window-s", "0"]


def cli(*argv, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench.cli", "run", *argv], capture_output=True, text=True,
                          timeout=900, env=env, cwd=cwd)


def result(run, method="mlp"):
    return json.loads((run / method / "HalfCheetah-v4" / "seed0" / "result.json").read_text())


@pytest.mark.parametrize("method", ["mlp", "popsan", "dsrl", "spikerl"])
@pytest.mark.slow
def test_two_ranks_stay_bit_identical_and_meet_the_budget(tmp_path, method):
    run = tmp_path / "run"
    proc = cli("--methods", method, "--nproc", "2", "--out", str(run), *ARGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = result(run, method)
    assert res["world_size"] == 2 and res["backend"] == "gloo" and res["status"] == "complete"
    assert res["updates"] >= 200
    a, b = res["param_sha256_by_rank"]
    assert a == b, "ranks drifted apart"
    assert res["steps"] == 1001
    seed = run / method / "HalfCheetah-v4" / "seed0"
    sizes = [load_checkpoint(seed / f"checkpoint.step1001.rank{r}.pt")["replay"]["size"] for r in range(2)]
    assert sizes == [split_budget(1001, 2, 0), split_budget(1001, 2, 1)] == [501, 500]
    evals = (seed / "evals.csv").read_text().splitlines()
    assert evals[-1].split(",")[4] == "2", "the 2 evaluation episodes are split over ranks and gathered"


# Spiking actors run in float64 here: in fp32 a batch of 16 and two batches of 8 may round a
# membrane differently by one ulp (BLAS sums in another order), and a membrane within an ulp of
# threshold then flips a spike. That is a property of spiking nets, not of gradient averaging,
# which is what this test checks; the MLP shows the fp32 case.
@pytest.mark.parametrize("method, dtype", [("mlp", "float32"), ("popsan", "float64"), ("dsrl", "float64"),
                                           ("spikerl", "float64")])
@pytest.mark.slow
def test_two_rank_update_equals_one_rank_update_on_the_concatenation(tmp_path, method, dtype):
    mp.spawn(W.grad_worker, args=(2, free_port(), method, dtype, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        _compare_with_single_process(ranks, method)
    finally:
        torch.set_default_dtype(previous)


def _compare_with_single_process(ranks, method):
    b0, b1 = W.batches(2, 8)
    whole = type(b0)(*(torch.cat([x, y]) for x, y in zip(b0, b1, strict=True)))
    single = W.make_td3(method)
    grads = W.captured_update(single, whole)
    params = [p.detach() for p in list(single.actor.parameters()) + list(single.critic.parameters())]
    assert len(grads) == len(ranks[0]["grads"]) > 0
    for r in ranks:
        for g_dist, g_one in zip(r["grads"], grads, strict=True):
            torch.testing.assert_close(g_dist, g_one, atol=1e-6, rtol=1e-5)
        for p_dist, p_one in zip(r["params"], params, strict=True):
            torch.testing.assert_close(p_dist, p_one, atol=1e-6, rtol=1e-5)
    # the check has teeth: one rank's own batch gives a different gradient
    alone = W.captured_update(W.make_td3(method), b0)
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(alone, grads, strict=True))


@pytest.mark.slow
def test_normaliser_statistics_merge_like_one_process(tmp_path):
    mp.spawn(W.normalizer_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"norm{r}.pt", weights_only=True) for r in range(2))
    data = np.random.default_rng(9).normal(1.0, 3.0, size=(300, W.OBS))
    for method in ("popsan", "dsrl"):
        for k in r0[method]:
            assert torch.equal(r0[method][k], r1[method][k]), f"{method}.{k} differs between ranks"
        single = get_method(method).build_normalizer(W._ctx(get_method(method)))
        single.update(data)
        for k, v in single.state_dict().items():
            torch.testing.assert_close(r0[method][k], v, atol=1e-9, rtol=1e-9)
    x = torch.as_tensor(data[:5], dtype=torch.float32)
    single = get_method("popsan").build_normalizer(W._ctx(get_method("popsan")))
    single.update(data)
    np.testing.assert_allclose(single(x).numpy(),
                               np.clip((data[:5] - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -3, 3),
                               rtol=1e-5, atol=1e-5)


def _rank_process(launcher_pid: int, rank: int):
    for child in psutil.Process(launcher_pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_dead_rank_fails_the_job_and_resume_finishes_it(tmp_path):
    full = tmp_path / "full"
    assert cli("--methods", "mlp", "--nproc", "2", "--out", str(full), *ARGS, cwd=tmp_path).returncode == 0

    cut = tmp_path / "cut"
    seed = cut / "mlp" / "HalfCheetah-v4" / "seed0"
    launcher = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--methods", "mlp", "--nproc", "2",
                                 "--out", str(cut), *ARGS], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and launcher.poll() is None:
        if len(list(seed.glob("checkpoint.step*.rank*.pt"))) >= 2 and "600" in _progress_steps(seed):
            break
        time.sleep(0.05)
    victim = _rank_process(launcher.pid, 1)
    assert victim is not None and launcher.poll() is None, "the job ended before a rank could be killed"
    victim.send_signal(signal.SIGKILL)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert "rank 1 exited" in err
    assert not (seed / "result.json").exists() or result(cut)["status"] != "complete"

    res = cli("--resume", str(cut), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    done = result(cut)
    assert done["status"] == "complete" and done["steps"] == 1001
    assert done["param_sha256_by_rank"] == result(full)["param_sha256_by_rank"]


def _progress_steps(seed):
    try:
        return {line.split(",")[0] for line in (seed / "progress.csv").read_text().splitlines()[1:]}
    except OSError:
        return set()


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="Open MPI is not installed (.ci/run installs it)")
@pytest.mark.slow
def test_mpirun_two_ranks_with_gloo(tmp_path):
    run = tmp_path / "run"
    port = free_port()
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "MASTER_ADDR=127.0.0.1",
           "-x", f"MASTER_PORT={port}", "-x", "PATH", "-x", "PYTHONPATH",
           sys.executable, "-m", "bench.train", "--methods", "mlp", "--backend", "gloo", "--out", str(run), *ARGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "OMPI_MCA_plm_rsh_agent": "",
                               "OMPI_MCA_btl_vader_single_copy_mechanism": "none"})
    assert proc.returncode == 0, (proc.stdout[-1500:], proc.stderr[-1500:])
    res = result(run)
    assert res["world_size"] == 2 and res["backend"] == "gloo" and res["steps"] == 1001
    assert res["param_sha256_by_rank"][0] == res["param_sha256_by_rank"][1]


def test_launcher_environments_are_read():
    assert detect_launch({}) is None
    tr = detect_launch({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h0", "MASTER_PORT": "1234"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.master_addr, tr.master_port, tr.launcher) == \
        (1, 4, 1, "h0", 1234, "torchrun")
    om = detect_launch({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1"})
    assert (om.rank, om.world_size, om.local_rank, om.master_addr, om.launcher) == (3, 8, 1, "127.0.0.1", "openmpi")
    mpich = detect_launch({"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALRANKID": "0", "MASTER_ADDR": "n1"})
    assert (mpich.rank, mpich.world_size, mpich.local_rank, mpich.launcher) == (2, 4, 0, "mpich")
    sl = detect_launch({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
                        "SLURM_JOB_NODELIST": "gpu[07-09,12],cpu3", "SLURM_JOB_ID": "4242"})
    assert (sl.rank, sl.world_size, sl.local_rank, sl.master_addr, sl.master_port) == (5, 8, 1, "gpu07", 24242)
    assert first_slurm_host("node001") == "node001"
    assert first_slurm_host("a[1-2],b[3]") == "a1"


@pytest.mark.slow
def test_mpi_backend_without_mpi_build_is_one_clear_line(capsys):
    from bench.cli import main

    if torch.distributed.is_mpi_available():
        pytest.skip("this PyTorch has MPI")
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        code = main(["run", "--methods", "mlp", "--backend", "mpi", "--out", "x"])
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "built with MPI" in err[0] and "mpirun" in err[0]
