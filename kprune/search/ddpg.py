"""A small NumPy DDPG agent (Lillicrap et al. 2016) as AMC uses it (He et al. 2018).

Actor ``μ(s)``: MLP ``state → hidden → hidden → 1`` with ReLU and a sigmoid output (an
action in (0, 1)). Critic ``Q(s, a)``: MLP on the concatenated state and action
(``hidden → hidden → 1``, ReLU; AMC's ``fc11(s) + fc12(a)`` first layer is the same function
class). Hidden layers are initialised uniformly in ``±1/sqrt(fan_in)``, the last layers in
``±3e-3`` (DDPG's init); both networks train with Adam and have target copies updated softly
(``θ' ← (1 − τ) θ' + τ θ``). Each update samples a minibatch from the replay buffer,
subtracts AMC's moving average of the rewards (``moving_alpha``), fits the critic to
``r + discount · (1 − done) · Q'(s', μ'(s'))`` and moves the actor up ``Q(s, μ(s))``.

NumPy rather than TensorFlow: the networks are tiny, and NumPy with a seeded
``numpy.random.Generator`` is bitwise deterministic, so a search replayed from its
checkpoint retrains the identical agent (see ``docs/search.md``).
"""

from __future__ import annotations

import numpy as np


class MLP:
    """Fully connected ReLU network with an optional sigmoid output, trained with Adam.

    Args:
        sizes: layer widths, input first (e.g. ``[12, 300, 300, 1]``).
        rng: ``numpy.random.Generator`` for the initialisation.
        sigmoid: squash the output into (0, 1) (default False).
        lr: Adam learning rate (default 1e-3).
        init_w: half-width of the last layer's uniform initialisation (default 3e-3).

    Example:
        >>> net = MLP([3, 8, 1], np.random.default_rng(0), sigmoid=True)
        >>> net(np.zeros((2, 3))).shape
        (2, 1)
    """

    def __init__(self, sizes, rng, sigmoid: bool = False, lr: float = 1e-3, init_w: float = 3e-3):
        self.sigmoid = sigmoid
        self.lr = float(lr)
        self.params = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = init_w if i == len(sizes) - 2 else 1.0 / np.sqrt(fan_in)
            self.params.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            self.params.append(rng.uniform(-bound, bound, (fan_out,)))
        self._m = [np.zeros_like(p) for p in self.params]
        self._v = [np.zeros_like(p) for p in self.params]
        self._t = 0

    def __call__(self, x):
        return self.forward(x)[0]

    def forward(self, x):
        """Returns ``(output, cache)``; the cache feeds :meth:`backward`."""
        acts = [np.asarray(x, dtype=np.float64)]
        n = len(self.params) // 2
        for i in range(n):
            z = acts[-1] @ self.params[2 * i] + self.params[2 * i + 1]
            if i < n - 1:
                z = np.maximum(z, 0.0)
            elif self.sigmoid:
                z = 1.0 / (1.0 + np.exp(-z))
            acts.append(z)
        return acts[-1], acts

    def backward(self, acts, grad_out):
        """Gradients of ``sum(grad_out * output)`` w.r.t. the parameters and the input."""
        n = len(self.params) // 2
        g = np.asarray(grad_out, dtype=np.float64)
        if self.sigmoid:
            g = g * acts[-1] * (1.0 - acts[-1])
        grads = [None] * len(self.params)
        for i in reversed(range(n)):
            grads[2 * i] = acts[i].T @ g
            grads[2 * i + 1] = g.sum(axis=0)
            g = g @ self.params[2 * i].T
            if i > 0:
                g = g * (acts[i] > 0)
        return grads, g

    def step(self, grads, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        """One Adam step down ``grads``."""
        self._t += 1
        for p, g, m, v in zip(self.params, grads, self._m, self._v):
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** self._t)
            v_hat = v / (1 - beta2 ** self._t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + eps)

    def copy(self) -> "MLP":
        out = MLP.__new__(MLP)
        out.sigmoid, out.lr, out._t = self.sigmoid, self.lr, 0
        out.params = [p.copy() for p in self.params]
        out._m = [np.zeros_like(p) for p in self.params]
        out._v = [np.zeros_like(p) for p in self.params]
        return out

    def soft_update(self, source: "MLP", tau: float):
        """``θ ← (1 − τ) θ + τ θ_source``."""
        for p, q in zip(self.params, source.params):
            p *= 1.0 - tau
            p += tau * q


class DDPG:
    """Actor, critic, their targets and a replay buffer (AMC's agent).

    Args:
        state_dim: size of a state.
        rng: ``numpy.random.Generator`` (initialisation, minibatches).
        hidden: hidden width of both networks (default 300, AMC's).
        lr_actor, lr_critic: Adam learning rates (defaults 1e-4 and 1e-3).
        tau: soft target update rate (default 0.01).
        discount: reward discount (default 1.0).
        batch_size: minibatch size (default 64).
        memory: replay buffer capacity in transitions (default 10000).
        moving_alpha: rate of the reward moving average subtracted from rewards (default 0.5).

    Example:
        >>> agent = DDPG(4, np.random.default_rng(0), hidden=16)
        >>> 0.0 < agent.act(np.zeros(4)) < 1.0
        True
    """

    def __init__(self, state_dim: int, rng, hidden: int = 300, lr_actor: float = 1e-4, lr_critic: float = 1e-3,
                 tau: float = 0.01, discount: float = 1.0, batch_size: int = 64, memory: int = 10000,
                 moving_alpha: float = 0.5):
        self.rng = rng
        self.actor = MLP([state_dim, hidden, hidden, 1], rng, sigmoid=True, lr=lr_actor)
        self.critic = MLP([state_dim + 1, hidden, hidden, 1], rng, lr=lr_critic)
        self.actor_target = self.actor.copy()
        self.critic_target = self.critic.copy()
        self.tau, self.discount, self.batch_size = float(tau), float(discount), int(batch_size)
        self.capacity = int(memory)
        self.moving_alpha = float(moving_alpha)
        self.moving_average = None
        self.buffer = []  # (state, action, reward, next_state, done)
        self._next = 0

    def act(self, state) -> float:
        """The actor's action for one state (no noise)."""
        return float(self.actor(np.asarray(state)[None, :])[0, 0])

    def observe(self, state, action: float, reward: float, next_state, done: bool) -> None:
        """Stores a transition (the oldest is overwritten when the buffer is full)."""
        item = (np.asarray(state, dtype=np.float64), float(action), float(reward),
                np.asarray(next_state, dtype=np.float64), float(done))
        if len(self.buffer) < self.capacity:
            self.buffer.append(item)
        else:
            self.buffer[self._next] = item
        self._next = (self._next + 1) % self.capacity

    def update(self) -> dict:
        """One DDPG update on a random minibatch; returns ``{"critic_loss", "q"}``."""
        idx = self.rng.integers(0, len(self.buffer), size=min(self.batch_size, len(self.buffer)))
        s = np.stack([self.buffer[i][0] for i in idx])
        a = np.array([[self.buffer[i][1]] for i in idx])
        r = np.array([[self.buffer[i][2]] for i in idx])
        s2 = np.stack([self.buffer[i][3] for i in idx])
        done = np.array([[self.buffer[i][4]] for i in idx])
        mean = float(r.mean())
        self.moving_average = mean if self.moving_average is None else \
            self.moving_average + self.moving_alpha * (mean - self.moving_average)
        r = r - self.moving_average
        next_q = self.critic_target(np.concatenate([s2, self.actor_target(s2)], axis=1))
        target = r + self.discount * (1.0 - done) * next_q
        # critic: mean squared error to the target
        q, cache = self.critic.forward(np.concatenate([s, a], axis=1))
        grads, _ = self.critic.backward(cache, 2.0 * (q - target) / len(idx))
        self.critic.step(grads)
        # actor: ascend Q(s, μ(s))
        mu, actor_cache = self.actor.forward(s)
        q_mu, cache = self.critic.forward(np.concatenate([s, mu], axis=1))
        _, dx = self.critic.backward(cache, -np.ones_like(q_mu) / len(idx))
        grads, _ = self.actor.backward(actor_cache, dx[:, -1:])
        self.actor.step(grads)
        self.actor_target.soft_update(self.actor, self.tau)
        self.critic_target.soft_update(self.critic, self.tau)
        return {"critic_loss": float(np.mean((q - target) ** 2)), "q": float(q_mu.mean())}


def truncated_normal(rng, mean: float, sigma: float, low: float, high: float, tries: int = 1000) -> float:
    """A sample of ``N(mean, sigma²)`` truncated to ``[low, high]`` (rejection sampling).

    Example:
        >>> 0.2 <= truncated_normal(np.random.default_rng(0), 0.5, 0.5, 0.2, 1.0) <= 1.0
        True
    """
    if sigma <= 0:
        return float(min(max(mean, low), high))
    for _ in range(tries):
        x = rng.normal(mean, sigma)
        if low <= x <= high:
            return float(x)
    return float(min(max(mean, low), high))
