"""Action-conditioned world models: encode each frame to one embedding, predict the next one
from the last few embeddings and the actions, and imagine futures for planning.

Three objectives over the same parts (encoder -> ``ActionConditionedPredictor`` -> loss):

- ``"lewm"`` - LeWorldModel (Maes et al. 2025): encoder (ViT-tiny + projector in the paper, a
  small conv net on CPU) trained end to end from pixels together with the predictor;
  ``loss = MSE(pred_{t}, z_{t+1}) + lambda * SIGReg(z)`` with ``lambda ~ 0.09-0.1``; no EMA, no
  stop-gradient (SIGReg, Balestriero & LeCun 2025, is what prevents collapse); frameskip 5.
- ``"vjepa2ac"`` - V-JEPA 2-AC (Assran et al. 2025): a frozen encoder (e.g. one trained by a JEPA
  recipe here, ``frozen_encoder="jepalab:RUN_DIR"``), predictor trained with an L1 teacher-forcing
  loss plus an L1 loss on a ``rollout_steps``-step (2 in the paper) autoregressive rollout.
- ``"dinowm"`` - the frozen pretrained encoder plug-in (DINO-WM, Zhou et al. 2024): any torch
  module (e.g. ImageNet EfficientNet-Lite0) kept fixed, predictor trained by teacher-forced MSE.

The compact planning model (``configs/wm_tworoom.yaml``): ``encoder="keypoint"`` (spatial
soft-argmax, ``jepalab.nn.keypoint``: embedding distances that keep growing with scene distances),
``predictor="mlp"`` (``jepalab.nn.mlp_dynamics``), a multi-step rollout loss (``rollout_steps``),
the variance-covariance terms of VICReg / EB-JEPA (``var_weight``, ``cov_weight``) instead of
SIGReg, and EB-JEPA's inverse-dynamics term (``idm_weight``). Any term can be combined with any
encoder; all are off by default, so the defaults stay LeWorldModel's recipe.

Frameskip (LeWorldModel): with ``frameskip = f`` the model sees every f-th frame and one *action
block* per transition, the ``f`` environment actions in between concatenated, so the predictor's
action width is ``f * action_dim`` (what planners must produce: see ``action_dim``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepalab.errors import ConfigError, ShapeError
from jepalab.nn.ac_predictor import ActionConditionedPredictor
from jepalab.nn.mlp_dynamics import MLPDynamics
from jepalab.objectives.cross_rank import gather_rows
from jepalab.objectives.inverse_dynamics import InverseDynamicsHead
from jepalab.objectives.vicreg import covariance_term, variance_term
from jepalab.objectives.prediction import KINDS, prediction_loss
from jepalab.recipes.base import Recipe

OBJECTIVES = ("lewm", "vjepa2ac", "dinowm")
ENCODERS = ("vit", "conv", "keypoint", "frozen")
PREDICTORS = ("transformer", "mlp")


@dataclass
class WorldModelConfig:
    """Hyper-parameters of :class:`WorldModel` (defaults: LeWorldModel's ViT-tiny setting)."""

    objective: str = "lewm"          # lewm | vjepa2ac | dinowm
    encoder: str = "vit"             # vit | conv | keypoint | frozen
    img_size: int = 64
    in_chans: int = 3
    embed_dim: int = 192             # D of trained encoders (a frozen one brings its own)
    patch_size: int = 8              # vit
    enc_depth: int = 12              # vit (ViT-tiny: 12 layers, 3 heads, 192-d)
    enc_heads: int = 3
    proj_hidden: int = 512           # vit projector MLP width
    enc_width: int = 16              # conv trunk width
    enc_dim: int = 64                # conv feature-map channels before the projector
    keypoints: int = 16              # keypoint: heatmaps (soft-argmax coordinates) per frame
    kp_map_size: int = 16            # keypoint: side of the heatmaps
    frozen_encoder: str = ""         # efficientnet_lite0 | module:pkg.path:callable | jepalab:RUN_DIR
    frozen_input_size: int = -1      # resize frames to this before the frozen encoder; -1 = spec default, 0 = none
    frozen_imagenet_norm: str = "auto"  # auto | on | off
    frozen_layer_norm: bool = True   # parameter-free LayerNorm on frozen features (unit-scale targets)
    action_dim: int = 2              # one environment action
    frameskip: int = 1               # env steps per model step (LeWM: 5); actions are concatenated
    history: int = 3                 # frames the predictor attends to (LeWM: 3)
    goal_frames: int = 1             # frames (model steps apart) that describe a goal; 2 when the goal
                                     # test includes velocities (planning/cost.py); <= history
    predictor: str = "transformer"   # transformer (LeWM: AdaLN-zero causal) | mlp (residual MLP)
    pred_dim: int = 192              # transformer width | mlp hidden width
    pred_depth: int = 6
    pred_heads: int = 4
    mlp_ratio: float = 4.0
    pred_residual: bool = True       # predict z_t + delta (see ActionConditionedPredictor)
    loss: str = "auto"               # auto = l2 for lewm/dinowm, l1 for vjepa2ac
    sigreg_weight: float = 0.09      # lewm only
    sigreg_proj: int = 256
    rollout_steps: int = -1          # -1 = auto: 2 for vjepa2ac, 0 (off) otherwise
    var_weight: float = 0.0          # variance hinge (VICReg / EB-JEPA) on each step's batch of embeddings
    cov_weight: float = 0.0          # covariance term (VICReg / EB-JEPA)
    idm_weight: float = 0.0          # inverse-dynamics term (PLDM / EB-JEPA): read a_t off (z_t, z_t+1)
    ensemble: int = 1                # predictors trained side by side; their disagreement is the planner's
                                     # uncertainty penalty (Planner(uncertainty=beta))

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix for any inconsistent field."""
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"model.objective={self.objective!r}: choose one of {OBJECTIVES}.")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"model.encoder={self.encoder!r}: choose one of {ENCODERS}.")
        frozen_obj = self.objective in ("vjepa2ac", "dinowm")
        if frozen_obj and self.encoder != "frozen":
            raise ConfigError(f"model.objective={self.objective!r} trains a predictor on a frozen encoder: set "
                              "model.encoder=frozen and model.frozen_encoder (e.g. efficientnet_lite0).")
        if not frozen_obj and self.encoder == "frozen":
            raise ConfigError("model.objective='lewm' trains its encoder end to end; with a frozen encoder use "
                              "objective 'dinowm' (MSE) or 'vjepa2ac' (L1 + rollout).")
        if self.encoder == "frozen" and not self.frozen_encoder:
            raise ConfigError("model.encoder=frozen needs model.frozen_encoder, e.g. 'efficientnet_lite0'.")
        if self.frozen_imagenet_norm not in ("auto", "on", "off"):
            raise ConfigError(f"model.frozen_imagenet_norm={self.frozen_imagenet_norm!r}: use auto, on or off.")
        for name in ("action_dim", "frameskip", "history", "pred_depth", "img_size", "in_chans"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}.")
        if isinstance(self.goal_frames, bool) or not isinstance(self.goal_frames, int) \
                or not 1 <= self.goal_frames <= self.history:
            raise ConfigError(f"model.goal_frames={self.goal_frames!r}: use an int from 1 to model.history="
                              f"{self.history} (a goal clip is compared with the model's last embeddings).")
        if self.predictor not in PREDICTORS:
            raise ConfigError(f"model.predictor={self.predictor!r}: choose one of {PREDICTORS}.")
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ConfigError(f"model.ensemble must be an int >= 1 (1 = a single predictor), got {self.ensemble!r}.")
        for name in ("var_weight", "cov_weight", "idm_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}.")
        if self.loss != "auto" and self.loss not in KINDS:
            raise ConfigError(f"model.loss={self.loss!r}: use auto or one of {KINDS}.")
        if self.sigreg_weight < 0:
            raise ConfigError(f"model.sigreg_weight must be >= 0, got {self.sigreg_weight}.")
        if self.rollout_steps < -1:
            raise ConfigError(f"model.rollout_steps must be -1 (auto), 0 (off) or a step count, got {self.rollout_steps}.")


class WorldModel(Recipe):
    """LeWorldModel / V-JEPA 2-AC / frozen-encoder world model (see the module docstring)."""

    name = "worldmodel"
    config_class = WorldModelConfig

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__(config)
        config.validate()
        c = config
        self.encoder = self._build_encoder(c)
        self.embed_dim: int = int(self.encoder.embed_dim)
        self.predictor = self._build_predictor(c)
        if c.idm_weight > 0:
            self.inverse_dynamics = InverseDynamicsHead(self.embed_dim, c.action_dim * c.frameskip)
        self.loss_kind = c.loss if c.loss != "auto" else ("l1" if c.objective == "vjepa2ac" else "l2")
        self.rollout_steps = c.rollout_steps if c.rollout_steps >= 0 else (2 if c.objective == "vjepa2ac" else 0)
        if c.objective == "lewm":
            from jepalab.objectives.sigreg import SIGReg

            self.sigreg = SIGReg(num_proj=c.sigreg_proj)
        # built last, so a model with an ensemble starts from the same weights as one without
        self.members = nn.ModuleList(self._build_predictor(c) for _ in range(c.ensemble - 1))

    def _build_predictor(self, c: WorldModelConfig) -> nn.Module:
        if c.predictor == "mlp":
            return MLPDynamics(self.embed_dim, c.action_dim * c.frameskip, hidden=c.pred_dim, depth=c.pred_depth,
                               history=c.history)
        return ActionConditionedPredictor(
            self.embed_dim, c.action_dim * c.frameskip, dim=c.pred_dim, depth=c.pred_depth, heads=c.pred_heads,
            history=c.history, mlp_ratio=c.mlp_ratio, residual=c.pred_residual,
        )

    @staticmethod
    def _build_encoder(c: WorldModelConfig) -> nn.Module:
        if c.encoder == "vit":
            from .worldmodel_encoders import ViTFrameEncoder

            return ViTFrameEncoder(c.img_size, c.in_chans, c.embed_dim, c.patch_size, c.enc_depth,
                                   c.enc_heads, c.proj_hidden)
        if c.encoder == "conv":
            from jepalab.nn.frame import FrameEncoder

            return FrameEncoder(c.img_size, c.in_chans, c.embed_dim, c.enc_width, c.enc_dim)
        if c.encoder == "keypoint":
            from jepalab.nn.keypoint import KeypointEncoder

            return KeypointEncoder(c.img_size, c.in_chans, c.embed_dim, c.enc_width, c.keypoints, c.kp_map_size)
        from .worldmodel_encoders import FrozenEncoder, load_frozen

        module, size, imagenet = load_frozen(c.frozen_encoder)
        if c.frozen_imagenet_norm != "auto":
            imagenet = c.frozen_imagenet_norm == "on"
        return FrozenEncoder(module, c.img_size, c.in_chans, size if c.frozen_input_size < 0 else c.frozen_input_size,
                             imagenet, c.frozen_layer_norm)

    @property
    def action_dim(self) -> int:
        """Width of one model action: ``frameskip x`` the environment's action dim."""
        return self.predictor.action_dim

    @property
    def frozen(self) -> bool:
        """True when the encoder is a fixed pretrained module (vjepa2ac / dinowm)."""
        return self.config.encoder == "frozen"

    def train(self, mode: bool = True) -> "WorldModel":
        super().train(mode)
        if self.frozen:
            self.encoder.train(False)
        return self

    # --- embeddings ---------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Frame embeddings ``(B, C, H, W) -> (B, D)``. Call ``model.eval()`` before planning."""
        if self.training and not self.frozen and x.dim() >= 1 and x.shape[0] < 2:
            raise ShapeError("encoding a single frame in training mode: the projector's BatchNorm needs batch "
                             "statistics; call model.eval() first (planning and evaluation always should).")
        return self.encoder(x)

    def encode_clip(self, frames: Tensor) -> Tensor:
        """Per-frame embeddings of a clip ``(B, T, C, H, W) -> (B, T, D)``."""
        if frames.dim() != 5:
            raise ShapeError(f"encode_clip expects frames (B, T, C, H, W), got {tuple(frames.shape)}.")
        b, t = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).view(b, t, -1)

    # --- data: frameskip and action blocks ------------------------------------------------------
    def action_blocks(self, frames: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Apply frameskip: ``(B, T, C, H, W), (B, T-1, A) -> (B, T', C, H, W), (B, T'-1, f*A)``.

        Keeps frames ``0, f, 2f, ...`` and concatenates the ``f`` actions between consecutive kept
        frames. Actions that already have width ``f*A`` (a source that blocks them itself) pass
        through with the frames unchanged.
        """
        f, a = self.config.frameskip, self.config.action_dim
        if frames.dim() != 5 or actions.dim() != 3 or actions.shape[:2] != (frames.shape[0], frames.shape[1] - 1):
            raise ShapeError(f"expected frames (B, T, C, H, W) and actions (B, T-1, A), got {tuple(frames.shape)} "
                             f"and {tuple(actions.shape)}: action t moves frame t to t+1.")
        if actions.shape[-1] == f * a:  # f == 1, or already blocked by the source
            return frames, actions
        if actions.shape[-1] != a:
            raise ShapeError(f"actions have width {actions.shape[-1]} but the model was built for "
                             f"model.action_dim={a} (x frameskip {f} = {f * a} per block); fix model.action_dim.")
        n = (frames.shape[1] - 1) // f
        if n < 1:
            raise ShapeError(f"a clip of {frames.shape[1]} frames is too short for frameskip {f}: need >= {f + 1}.")
        blocks = actions[:, : n * f].reshape(actions.shape[0], n, f * a)
        return frames[:, : n * f + 1: f], blocks

    # --- imagination ----------------------------------------------------------------------------
    def predict(self, z: Tensor, actions: Tensor) -> Tensor:
        """Teacher-forced next embeddings ``(B, T, D), (B, T, f*A) -> (B, T, D)``."""
        return self.predictor(z, actions)

    def rollout(self, z_hist: Tensor, actions: Tensor, a_hist: Tensor | None = None) -> Tensor:
        """Imagine ``H`` steps: ``(B, k, D), (B, H, f*A), (B, k-1, f*A) | None -> (B, H, D)``.

        Batched over ``B`` (planners pass envs x candidates); see
        :meth:`ActionConditionedPredictor.rollout`. Use under ``torch.inference_mode()`` to plan.
        """
        return self.predictor.rollout(z_hist, actions, a_hist)

    def rollout_members(self, z_hist: Tensor, actions: Tensor, a_hist: Tensor | None = None) -> Tensor:
        """Every ensemble member's imagination ``(K, B, H, D)`` (member 0 is :meth:`rollout`); their
        spread is what ``Planner(uncertainty=beta)`` penalises. ``K = model.ensemble``."""
        return torch.stack([p.rollout(z_hist, actions, a_hist) for p in (self.predictor, *self.members)])

    # --- training -------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        if "frames" not in batch or "actions" not in batch:
            raise ShapeError(f"the world model needs batch keys 'frames' and 'actions', got {sorted(batch)}; use "
                             "the bouncing source with variant 'actions' or a trajectory source.")
        frames, actions = self.action_blocks(batch["frames"], batch["actions"])
        t = frames.shape[1]
        if t < 2:
            raise ShapeError("a training clip needs at least 2 (frameskipped) frames.")
        z = self.encode_clip(frames)                       # (B, T, D); frozen: no grad
        pred = self.predictor(z[:, :-1], actions)          # (B, T-1, D): prediction of z[:, 1:]
        tf = prediction_loss(pred, z[:, 1:], self.loss_kind)
        loss = tf
        out: dict[str, Tensor] = {"teacher_forcing": tf.detach()}
        s = min(self.rollout_steps, t - 1)
        if s > 0:
            ctx = t - s                                    # observed frames before the rollout
            roll = self.predictor.rollout(z[:, :ctx], actions[:, ctx - 1:], actions[:, : ctx - 1])
            rl = prediction_loss(roll, z[:, ctx:], self.loss_kind)
            loss = loss + rl
            out["rollout"] = rl.detach()
        if len(self.members):  # the extra members learn the same dynamics on the (detached) embeddings
            zd, s2 = z.detach(), min(max(self.rollout_steps, 1), t - 1)
            ml = torch.stack([prediction_loss(m.rollout(zd[:, : t - s2], actions[:, t - s2 - 1:],
                                                        actions[:, : t - s2 - 1]), zd[:, t - s2:], self.loss_kind)
                              + prediction_loss(m(zd[:, :-1], actions), zd[:, 1:], self.loss_kind)
                              for m in self.members]).mean()
            loss = loss + ml
            out["ensemble"] = ml.detach()
        if self.config.objective == "lewm" and self.config.sigreg_weight > 0:
            # LeWM's SIGReg: the Epps-Pulley test over the *batch* at each time step, averaged over
            # steps (same projections for all steps and on every rank). Pooling the B*T frames into
            # one sample would count a clip's own frames as spread and weigh the term ~T x heavier.
            reg = torch.stack([self.sigreg(z[:, i], step=step) for i in range(t)]).mean()
            loss = loss + self.config.sigreg_weight * reg
            out["sigreg"] = reg.detach()
        c = self.config
        if c.var_weight > 0 or c.cov_weight > 0:  # per time step, as SIGReg: a clip's own frames are not spread
            # over the global batch under DDP (gather_rows), so W processes train what one does
            zs = [gather_rows(z[:, i]) for i in range(t)]
            var = torch.stack([variance_term(x) for x in zs]).mean()
            cov = torch.stack([covariance_term(x) for x in zs]).mean()
            loss = loss + c.var_weight * var + c.cov_weight * cov
            out["variance"], out["covariance"] = var.detach(), cov.detach()
        if c.idm_weight > 0:
            idm = self.inverse_dynamics.loss(z, actions)
            loss = loss + c.idm_weight * idm
            out["inverse_dynamics"] = idm.detach()
        out["loss"] = loss
        out["embeddings"] = z.flatten(0, 1).detach()
        return out


RECIPE = WorldModel

__all__ = ["WorldModel", "WorldModelConfig", "OBJECTIVES", "ENCODERS", "RECIPE"]
