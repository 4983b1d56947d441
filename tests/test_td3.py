"""The TD3 update rules on hand-checkable cases."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from spikerl.config import TD3Config
from spikerl.critic import TwinCritic
from spikerl.normalizers import IdentityNormalizer
from spikerl.replay import ReplayBatch, ReplayBuffer
from spikerl.td3 import TD3, UpdateHook, polyak_


class ConstActor(nn.Module):
    """μ(s) = tanh(w) for every state: makes the target action easy to compute by hand."""

    def __init__(self, act_dim: int, value: float):
        super().__init__()
        self.w = nn.Parameter(torch.full((act_dim,), value))

    def forward(self, obs):
        return torch.tanh(self.w).expand(obs.shape[0], -1)


def make_td3(**cfg):
    torch.manual_seed(0)
    actor = ConstActor(2, 0.3)
    critic = TwinCritic(3, 2, hidden=(8,))
    config = TD3Config(batch_size=4, replay_size=16, **cfg)
    return TD3(actor, critic, IdentityNormalizer(3), config, act_limit=1.0, device=torch.device("cpu"))


def test_target_bootstraps_on_truncation_not_on_termination():
    td3 = make_td3(target_noise=0.0)
    next_obs = torch.randn(2, 3)
    rew = torch.tensor([1.0, 1.0])
    y = td3.target(rew, next_obs, terminated=torch.tensor([0.0, 1.0]))
    a = torch.tanh(torch.full((2, 2), 0.3))
    q = td3.critic_target(next_obs, a).min(dim=0).values
    assert y[0].item() == pytest.approx(1.0 + 0.99 * q[0].item(), rel=1e-6)
    assert y[1].item() == pytest.approx(1.0)  # a true terminal state: no bootstrap


def test_target_noise_is_per_element_and_clipped():
    td3 = make_td3(target_noise=1e6, noise_clip=0.5)
    seen = []
    orig = td3.critic_target.forward

    def spy(obs, act):
        seen.append(act.clone())
        return orig(obs, act)

    td3.critic_target.forward = spy
    td3.target(torch.zeros(64), torch.randn(64, 3), torch.zeros(64))
    noise = seen[0] - torch.tanh(torch.tensor(0.3))
    # huge σ: every element is clipped to ±0.5, and signs vary element by element
    assert torch.allclose(noise.abs(), torch.full_like(noise, 0.5), atol=1e-5)
    assert (noise > 0).any(dim=0).all() and (noise < 0).any(dim=0).all()
    assert not torch.equal(noise[:, 0], noise[:, 1])


def test_policy_delay_and_polyak_targets():
    td3 = make_td3(policy_delay=2, tau=0.5)
    batch = ReplayBatch(torch.randn(4, 3), torch.rand(4, 2), torch.randn(4), torch.randn(4, 3), torch.zeros(4))
    actor0 = td3.actor.w.detach().clone()
    target0 = td3.actor_target.w.detach().clone()
    critic_t0 = [p.detach().clone() for p in td3.critic_target.parameters()]
    td3.update(batch)
    assert torch.equal(td3.actor.w, actor0), "actor must wait for the second critic update"
    assert torch.equal(td3.actor_target.w, target0)
    assert all(torch.equal(a, b) for a, b in zip(td3.critic_target.parameters(), critic_t0, strict=True))
    td3.update(batch)
    assert not torch.equal(td3.actor.w, actor0)
    expected = 0.5 * target0 + 0.5 * td3.actor.w.detach()
    assert torch.allclose(td3.actor_target.w, expected, atol=1e-7)


def test_polyak_formula():
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in dst.parameters()]
    polyak_(dst, src, 0.005)
    for b, s, d in zip(before, src.parameters(), dst.parameters(), strict=True):
        assert torch.allclose(d, 0.995 * b + 0.005 * s, atol=1e-7)


def test_actor_step_leaves_critic_untouched():
    td3 = make_td3(policy_delay=1)
    batch = ReplayBatch(torch.randn(4, 3), torch.rand(4, 2), torch.randn(4), torch.randn(4, 3), torch.zeros(4))
    critic_copy = copy.deepcopy(td3.critic)
    # a critic step then an actor step: the critic changes once, by its own optimiser only
    td3.critic_opt.step = lambda: None  # freeze the critic optimiser to isolate the actor step
    td3.update(batch)
    for a, b in zip(td3.critic.parameters(), critic_copy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_twin_critic_equals_two_independent_mlps():
    torch.manual_seed(1)
    critic = TwinCritic(3, 2, hidden=(5, 4))
    obs, act = torch.randn(6, 3), torch.randn(6, 2)
    q = critic(obs, act)
    x = torch.cat([obs, act], -1)
    for i in range(2):
        h = x
        for k, (w, b) in enumerate(zip(critic.weights, critic.biases, strict=True)):
            h = h @ w[i] + b[i, 0]
            if k < 2:
                h = torch.relu(h)
        assert torch.allclose(q[i], h.squeeze(-1), atol=1e-6)
    assert torch.allclose(critic.q1(obs, act), q[0], atol=1e-6)


def test_replay_buffer_wraps_and_keeps_terminal_flags():
    buf = ReplayBuffer(obs_dim=2, act_dim=1, capacity=3, seed=0)
    for i in range(5):
        buf.add(np.full(2, i), np.full(1, i), float(i), np.full(2, i + 1), terminated=(i == 4))
    assert len(buf) == 3 and buf.ptr == 2
    assert sorted(buf.rew.tolist()) == [2.0, 3.0, 4.0]
    assert buf.terminated[buf.rew == 4.0].item() == 1.0
    batch = buf.sample(50)
    assert set(batch.rew.tolist()) <= {2.0, 3.0, 4.0}
    assert torch.equal(batch.next_obs[:, 0], batch.obs[:, 0] + 1)


def test_replay_state_roundtrip_continues_sampling():
    buf = ReplayBuffer(2, 1, 10, seed=3)
    for i in range(7):
        buf.add(np.full(2, i), np.zeros(1), float(i), np.zeros(2), False)
    state = buf.state_dict()
    other = ReplayBuffer(2, 1, 10, seed=99)
    other.load_state_dict(state)
    assert torch.equal(buf.sample(20).rew, other.sample(20).rew)


def _popsan_td3(seed: int, encoding: str = "deterministic") -> TD3:
    from spikerl.normalizers import ZScoreNormalizer
    from spikerl.popspike_actor import PopSpikingActor

    torch.manual_seed(seed)
    actor = PopSpikingActor(5, 2, 1.0, hidden=(32, 32), encoding=encoding)
    norm = ZScoreNormalizer(5)
    norm.update(np.random.default_rng(seed).normal(size=(50, 5)))
    return TD3(actor, TwinCritic(5, 2, hidden=(16, 16)), norm, TD3Config(batch_size=40), act_limit=1.0,
               device=torch.device("cpu"))


def _batches(n: int, size: int = 40) -> list[ReplayBatch]:
    g = torch.Generator().manual_seed(3)
    return [ReplayBatch(torch.randn(size, 5, generator=g) * 2, torch.rand(size, 2, generator=g) * 2 - 1,
                        torch.randn(size, generator=g), torch.randn(size, 5, generator=g) * 2,
                        (torch.rand(size, generator=g) < 0.1).float()) for _ in range(n)]


def _params(td3: TD3) -> list[torch.Tensor]:
    mods = (td3.actor, td3.critic, td3.actor_target, td3.critic_target)
    return [p.detach().clone() for m in mods for p in m.parameters()]


@pytest.fixture(params=["torch", "native"])
def spiking_path(request, monkeypatch):
    from spikerl import native

    if request.param == "torch":
        monkeypatch.setenv("SPIKERL_NATIVE", "0")
    native._reset()
    if request.param == "native" and native.library() is None:
        pytest.skip(f"native kernels: {native.unavailable_reason()}")
    yield request.param
    monkeypatch.undo()
    native._reset()


@pytest.mark.parametrize("first", [0, 1])
def test_update_many_equals_one_update_at_a_time(first, spiking_path):
    """Targets of updates that share target nets are computed together, and nothing else changes.

    On the torch path the parameters match one-at-a-time updates to the bit, from an even or an odd
    update count (a group then ends at the first actor step). The native kernels pick sparse or
    dense products by the spike density of all rows at once, so a stacked group may round
    differently (fp32 summation order): equal to rounding there."""
    batches = _batches(7)
    one, many = _popsan_td3(0), _popsan_td3(0)
    for td3 in (one, many):
        torch.manual_seed(7)
        for b in batches[:first]:
            td3.update(b)
    torch.manual_seed(11)
    for b in batches[first:]:
        one.update(b)
    torch.manual_seed(11)
    many.update_many(batches[first:])
    assert one.updates == many.updates == 7
    for a, b in zip(_params(one), _params(many), strict=True):
        if spiking_path == "torch":
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_update_many_consumes_the_rng_like_one_update_at_a_time():
    batches = _batches(4)
    one, many = _popsan_td3(1), _popsan_td3(1)
    torch.manual_seed(5)
    for b in batches:
        one.update(b)
    after_one = torch.randn(4)
    torch.manual_seed(5)
    many.update_many(batches)
    assert torch.equal(torch.randn(4), after_one)


def test_update_many_with_poisson_encoding_groups_and_learns_the_same_way():
    """Poisson spikes for a group are drawn at once (another RNG order), so results differ from
    one-at-a-time updates only through those draws: same counts, finite, every parameter moved."""
    td3 = _popsan_td3(2, "poisson")
    before = _params(td3)
    td3.update_many(_batches(5))
    assert td3.updates == 5
    after = _params(td3)
    assert all(torch.isfinite(p).all() for p in after)
    assert sum(not torch.equal(a, b) for a, b in zip(before, after, strict=True)) == len(before)


@pytest.mark.parametrize("size", [3, 150, 1000])
def test_sample_many_draws_the_same_batches_as_repeated_sample(size):
    def filled(seed: int) -> ReplayBuffer:
        buf = ReplayBuffer(2, 1, 1000, seed=seed)
        for i in range(size):
            buf.add(np.array([i, -i]), np.array([i / 10]), float(i), np.array([i + 1, -i]), i % 7 == 0)
        return buf

    one, many = filled(4), filled(4)
    singles = [one.sample(10) for _ in range(6)]
    batches = many.sample_many(6, 10)
    assert len(batches) == 6
    for a, b in zip(singles, batches, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y) and y.is_contiguous()
    assert torch.equal(one.sample(5).obs, many.sample(5).obs)  # the generators stay in step


class Recorder(UpdateHook):
    def __init__(self):
        self.before, self.after = [], []

    def before_update(self, td3, batch):
        self.before.append((td3.updates, batch))

    def after_updates(self, td3, n_updates, seconds):
        self.after.append((td3.updates, n_updates, seconds))


def test_update_hook_sees_each_update_before_it_runs_and_changes_nothing():
    batches = _batches(5)
    plain, hooked = _popsan_td3(0), _popsan_td3(0)
    hooked.hook = rec = Recorder()
    for td3 in (plain, hooked):
        torch.manual_seed(3)
        td3.update_many(batches[:2])
        td3.update_many(batches[2:])
    assert [(n, b is batches[n]) for n, b in rec.before] == [(n, True) for n in range(5)]
    assert [(done, n) for done, n, _ in rec.after] == [(2, 2), (5, 3)]
    assert all(s > 0 for _, _, s in rec.after)
    assert all(torch.equal(a, b) for a, b in zip(_params(plain), _params(hooked), strict=True))
