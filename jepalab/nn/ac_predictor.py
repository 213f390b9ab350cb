"""Action-conditioned predictor: a causal transformer over frame embeddings, actions by AdaLN-zero.

The world-model predictor of LeWorldModel (Maes et al. 2025, "LeWorldModel: ...", a 6-layer causal
transformer over 3 history frames with actions entering every block by AdaLN-zero) and, with an L1
loss on a frozen encoder, of V-JEPA 2-AC (Assran et al. 2025, "V-JEPA 2", block-causal attention
over frames, teacher forcing + rollout). AdaLN-zero is DiT's conditioning (Peebles & Xie 2023):
each block's LayerNorms get a per-token scale and shift, and each residual branch a gate, all
regressed from the conditioning vector by a zero-initialised linear layer, so every block starts
as the identity and the action's influence is learned from zero.

One token per frame. Why windows rather than one long causal sequence: the predictor only ever sees
the last ``history`` frames, with positions counted from the window's start (as LeWorldModel),
so a prediction depends on the recent past alone, never on the absolute time index, and a rollout
that runs past the training clip length sees exactly the positions it was trained on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jepalab.errors import ShapeError

from .blocks import Attention, init_weights


class AdaLNZeroBlock(nn.Module):
    """Pre-norm transformer block modulated per token by a conditioning vector (AdaLN-zero, DiT).

    ``x (B, L, dim), c (B, L, dim), attn_mask (L, L) -> (B, L, dim)``. The modulation layer is
    zero-initialised: at init the block returns ``x`` unchanged whatever ``c`` is.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def zero_init(self) -> None:
        """Zero the modulation layer: scale = shift = gate = 0, so the block is the identity."""
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor, attn_mask: Tensor | None = None, mod: Tensor | None = None) -> Tensor:
        """``mod`` (B, L, 6*dim), if given, is ``self.modulation(c)`` precomputed (rollouts cache it)."""
        mod = self.modulation(c) if mod is None else mod
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, attn_mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class ActionConditionedPredictor(nn.Module):
    """Predict the next frame embedding from the last ``history`` embeddings and actions.

    ``forward(z (B, T, D), actions (B, T, A)) -> (B, T, D)``: output ``t`` predicts ``z_{t+1}``
    from ``z_{max(0, t-history+1)..t}`` and the actions at those steps (action ``t`` moves frame
    ``t`` to ``t+1``). ``rollout`` imagines ``H`` steps ahead, batched, for planners.

    ``residual=True`` predicts ``z_t + delta`` with a zero-initialised output layer, so the
    untrained model is the copy-last-embedding baseline (a deviation from LeWorldModel's plain
    projection that makes tiny CPU runs learn faster; set it False for the paper's form).
    """

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        dim: int = 192,
        depth: int = 6,
        heads: int = 4,
        history: int = 3,
        mlp_ratio: float = 4.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        for name, v, lo in (("embed_dim", embed_dim, 1), ("action_dim", action_dim, 1), ("dim", dim, 1),
                            ("depth", depth, 1), ("heads", heads, 1), ("history", history, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ShapeError(f"ActionConditionedPredictor: {name} must be an int >= {lo}, got {v!r}.")
        self.embed_dim, self.action_dim, self.dim = embed_dim, action_dim, dim
        self.history, self.residual = history, residual
        self.in_proj = nn.Linear(embed_dim, dim)
        self.action_embed = nn.Sequential(nn.Linear(action_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.pos = nn.Parameter(torch.zeros(history, dim))
        self.blocks = nn.ModuleList(AdaLNZeroBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, embed_dim)
        self.register_buffer("causal", torch.ones(history, history, dtype=torch.bool).tril(), persistent=False)
        # The usual ViT init (std 0.02) everywhere but the action embedder: its output drives every
        # block's modulation, and at std 0.02 it would be ~1e-3, making the action pathway learn
        # orders of magnitude slower (PyTorch's default init keeps it O(0.1-1) for actions in [-1, 1]).
        for m in [*self.in_proj.modules(), *self.blocks.modules(), *self.out_proj.modules()]:
            if isinstance(m, nn.Linear):
                init_weights(m)
        nn.init.trunc_normal_(self.pos, std=0.02)
        for blk in self.blocks:
            blk.zero_init()
        if residual:
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)

    # --- input checks ----------------------------------------------------------------------------
    def _check(self, z: Tensor, actions: Tensor, what: str) -> None:
        if z.dim() != 3 or z.shape[-1] != self.embed_dim:
            raise ShapeError(f"{what}: embeddings must be (B, T, D={self.embed_dim}), got {tuple(z.shape)}.")
        if actions.dim() != 3 or actions.shape[-1] != self.action_dim:
            raise ShapeError(
                f"{what}: actions must be (B, T, A={self.action_dim}), got {tuple(actions.shape)}; the model "
                f"was built for {self.action_dim}-d actions (action blocks of frameskip x env action dim)."
            )
        if not (z.is_floating_point() and actions.is_floating_point()):
            raise ShapeError(f"{what}: embeddings and actions must be floating point, got {z.dtype}, {actions.dtype}.")

    # --- the network on one window -----------------------------------------------------------------
    def _run(self, x: Tensor, c: Tensor | None, mods: list[Tensor] | None = None) -> Tensor:
        """Blocks over windows of ``L <= history`` frames: ``x, c (B, L, dim) -> (B, L, dim)``
        (or per-block precomputed modulations ``mods[i] (B, L, 6*dim)`` instead of ``c``)."""
        n = x.shape[1]
        x = x + self.pos[:n]
        mask = self.causal[:n, :n]
        for i, blk in enumerate(self.blocks):
            x = blk(x, c, mask, None if mods is None else mods[i])
        return self.norm(x)

    def _head(self, h: Tensor, z_last: Tensor) -> Tensor:
        out = self.out_proj(h)
        return z_last + out if self.residual else out

    # --- public API --------------------------------------------------------------------------------
    def forward(self, z: Tensor, actions: Tensor) -> Tensor:
        """Teacher-forced next-embedding predictions ``(B, T, D), (B, T, A) -> (B, T, D)``."""
        self._check(z, actions, "ActionConditionedPredictor")
        if actions.shape[:2] != z.shape[:2]:
            raise ShapeError(f"ActionConditionedPredictor: actions {tuple(actions.shape)} must have the same "
                             f"(B, T) as embeddings {tuple(z.shape)}: one action per frame (action t moves t -> t+1).")
        b, t, _ = z.shape
        x, c, k = self.in_proj(z), self.action_embed(actions), self.history
        if t <= k:
            return self._head(self._run(x, c), z)
        # Sliding windows of k frames; window s covers frames s..s+k-1.
        nw = t - k + 1
        xw = x.unfold(1, k, 1).permute(0, 1, 3, 2).reshape(b * nw, k, self.dim)
        cw = c.unfold(1, k, 1).permute(0, 1, 3, 2).reshape(b * nw, k, self.dim)
        h = self._run(xw, cw).view(b, nw, k, self.dim)
        # Frames 0..k-2 from the first window (shorter history), then each window's last slot.
        h = torch.cat([h[:, 0, : k - 1], h[:, :, -1]], dim=1)
        return self._head(h, z)

    def rollout(self, z_hist: Tensor, actions: Tensor, a_hist: Tensor | None = None) -> Tensor:
        """Autoregressive imagination ``(B, k, D), (B, H, A), (B, k-1, A) | None -> (B, H, D)``.

        ``z_hist`` are the last ``k`` observed embeddings, ``a_hist`` the ``k-1`` actions between
        them (zeros when None: the unknown past actions count as "no push"), ``actions[:, h]`` the
        action taken after the ``h``-th newest frame. Only the last ``history`` frames are used.
        Batched over ``B`` (planners pass envs x candidates); the loop runs over ``H`` only and each
        step costs one pass over ``<= history`` tokens. Gradients flow when enabled (rollout loss,
        gradient planners); wrap in ``torch.inference_mode()`` for planning.
        """
        if z_hist.dim() != 3 or z_hist.shape[1] < 1:
            raise ShapeError(f"rollout: z_hist must be (B, k>=1, D), got {tuple(z_hist.shape)}.")
        b, k_in, _ = z_hist.shape
        if actions.dim() != 3 or actions.shape[0] != b or actions.shape[1] < 1:
            raise ShapeError(f"rollout: actions must be (B={b}, H>=1, A={self.action_dim}), got {tuple(actions.shape)}.")
        self._check(z_hist, actions, "rollout")
        if a_hist is None:
            a_hist = actions.new_zeros(b, k_in - 1, self.action_dim)
        elif a_hist.shape != (b, k_in - 1, self.action_dim):
            raise ShapeError(f"rollout: a_hist must be (B, k-1, A) = ({b}, {k_in - 1}, {self.action_dim}), "
                             f"got {tuple(a_hist.shape)}.")
        keep = min(k_in, self.history)
        z_hist = z_hist[:, k_in - keep:]
        a_hist = a_hist[:, a_hist.shape[1] - (keep - 1):]
        # Cached once: frame tokens of the history and, per block, the AdaLN modulation of every
        # action (time-indexed); a step then only runs attention + MLP over <= history tokens.
        xs = list(self.in_proj(z_hist).unbind(1))
        c_all = self.action_embed(torch.cat([a_hist, actions.to(a_hist.dtype)], dim=1))  # (B, keep-1+H, dim)
        mods = [blk.modulation(c_all) for blk in self.blocks]                            # (B, keep-1+H, 6*dim)
        z_last, outs = z_hist[:, -1], []
        for h in range(actions.shape[1]):
            win = torch.stack(xs[-self.history:], dim=1)
            n = win.shape[1]
            now = keep - 1 + h  # time index of the newest frame
            step_mods = [m[:, now - n + 1: now + 1] for m in mods]
            z_last = self._head(self._run(win, None, step_mods)[:, -1], z_last)
            outs.append(z_last)
            xs.append(self.in_proj(z_last))
        return torch.stack(outs, dim=1)


__all__ = ["ActionConditionedPredictor", "AdaLNZeroBlock"]
