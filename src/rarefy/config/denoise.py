"""Denoise section: the event-level denoiser, its model, loss, mixup, imbalance schedule and training."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import MAX_LAYERS, MAX_PARALLEL, MAX_SAMPLES, MAX_SEED, MAX_STEPS, MAX_WIDTH, ConfigModel

__all__ = ["DenoiseModelConfig", "LOSS_PARAMETERS", "DenoiseLossConfig", "MixupConfig", "ImbalancePhaseConfig", "EarlyStoppingConfig", "DenoiseConfig"]


#: the units of one layer
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class DenoiseModelConfig(ConfigModel):
    """The denoiser's per-event model.

    ``kind: cnp`` and ``attentive`` are conditional neural processes: each event is scored
    from a labelled context set of its own run (mean-pooled, or also cross-attended).
    ``factorised`` is a factorised per-event classifier: its logit is ``a(φ) + u(θ)·v(φ)``
    (a rank-``rank`` design term) and it reads no context; it is the kind that
    ``examples/moderator/denoise.yaml`` uses (docs/denoise.md). Defaults are RESuM-size (≈1e5 parameters). ``rep_dim`` is the representation size
    (default: last encoder width); ``heads`` the attention heads of the attentive variant;
    ``rank`` and ``design_widths`` the low-rank design interaction of the factorised one
    (:class:`rarefy.denoise.FactorisedClassifier`; ``design_widths: []`` makes it linear in θ).
    """

    kind: Literal["cnp", "attentive", "factorised"] = "cnp"
    """``cnp`` (conditional neural process), ``attentive`` (attentive neural process) or ``factorised``
    (factorised per-event classifier, reads no context)"""
    encoder: list[Width] = Field(default_factory=lambda: [32, 64, 128, 128, 128, 64, 48, 32], max_length=MAX_LAYERS)
    """units of each encoder layer"""
    decoder: list[Width] = Field(default_factory=lambda: [32, 64, 128, 128, 128, 64, 48, 32], max_length=MAX_LAYERS)
    """units of each decoder layer"""
    rep_dim: int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    """representation size (default: the last encoder width)"""
    heads: int = Field(default=4, ge=1, le=MAX_WIDTH)
    """attentive: attention heads (the representation size must be a multiple)"""
    rank: int = Field(default=1, ge=1, le=MAX_WIDTH)
    """factorised: rank of the low-rank design interaction"""
    design_widths: list[Width] = Field(default_factory=list, max_length=MAX_LAYERS)
    """factorised: units of each layer of the design network (``[]``: linear in θ)"""

    @model_validator(mode="after")
    def _widths(self) -> "DenoiseModelConfig":
        if any(w < 1 for w in (*self.encoder, *self.decoder, *self.design_widths)):
            raise ValueError("layer widths must be >= 1")
        rep = self.rep_dim or (self.encoder[-1] if self.encoder else 32)
        if self.kind == "attentive" and rep % self.heads:
            raise ValueError(f"the representation size {rep} must be a multiple of heads ({self.heads})")
        return self


#: the denoiser's losses and the parameters each takes (the schema of ``rarefy.nn.losses.LOSSES``)
LOSS_PARAMETERS: dict[str, tuple[str, ...]] = {
    "bce": (),
    "focal": ("alpha_pos", "alpha_neg", "gamma"),
    "logit_adjusted": ("prior", "tau"),
    "gaussian_nll": (),
    "brier": (),
}


class DenoiseLossConfig(ConfigModel):
    """Training loss by name (``bce``, ``focal``, ``logit_adjusted``, ``gaussian_nll``, ``brier``) and its parameters."""

    name: str = "bce"
    """the loss: ``bce``, ``focal``, ``logit_adjusted``, ``gaussian_nll`` or ``brier``"""
    params: dict[str, Any] = Field(default_factory=dict)
    """the loss's parameters (focal: ``alpha_pos``, ``alpha_neg``, ``gamma``; logit_adjusted: ``prior``, ``tau``;
    the others: none)"""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known(self) -> "DenoiseLossConfig":
        if self.name not in LOSS_PARAMETERS:
            raise ValueError(f"unknown loss {self.name!r}; known losses: {', '.join(sorted(LOSS_PARAMETERS))}")
        allowed = LOSS_PARAMETERS[self.name]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(f"loss {self.name!r} has no parameter(s) {unknown}; it takes: {list(allowed) or 'none'}")
        return self


class MixupConfig(ConfigModel):
    """Signal–background mixup: ``fraction`` of the batch, λ ~ Uniform(a, b) or Beta(a, b)."""

    enabled: bool = False
    """apply signal–background mixup"""
    fraction: float = Field(default=0.1, ge=0, le=1)
    """fraction of the batch that is mixed"""
    distribution: Literal["uniform", "beta"] = "uniform"
    """distribution of the mixing weight λ: Uniform(a, b) or Beta(a, b)"""
    a: float = Field(default=0.5, gt=0)
    """first parameter of λ's distribution (uniform: lower bound)"""
    b: float = Field(default=1.0, gt=0)
    """second parameter of λ's distribution (uniform: upper bound)"""

    @model_validator(mode="after")
    def _range(self) -> "MixupConfig":
        if self.distribution == "uniform" and not (0 <= self.a <= self.b <= 1):
            raise ValueError(f"uniform mixup needs 0 <= a <= b <= 1, got a={self.a}, b={self.b}")
        return self


class ImbalancePhaseConfig(ConfigModel):
    """One phase of positive oversampling: ``epochs``, pool positives per batch (``null``: natural), reuse cap per epoch."""

    epochs: int = Field(ge=1, le=MAX_STEPS)
    """epochs of the phase"""
    positive_ratio: float | None = Field(default=None, ge=0, lt=1)
    """fraction of each batch drawn from the positive pool (null: the natural distribution)"""
    max_reuse: int = Field(default=10, ge=1, le=MAX_SAMPLES)
    """most draws of one pool positive per epoch"""


class EarlyStoppingConfig(ConfigModel):
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs; restore the best weights."""

    enabled: bool = True
    """stop early on the validation loss"""
    patience: int = Field(default=5, ge=1, le=MAX_STEPS)
    """epochs without improvement before stopping"""
    min_delta: float = Field(default=0.0, ge=0)
    """smallest decrease of the validation loss that counts as an improvement"""


class DenoiseConfig(ConfigModel):
    """Event-level denoiser training; see :func:`rarefy.denoise.train`.

    ``epochs`` applies without an ``imbalance`` schedule (default 20); with one, training
    runs the phases' epochs. ``lr_schedule: cosine`` anneals the learning rate from ``lr``
    towards 0 over those epochs (epoch ``e`` of ``E`` uses ``lr·(1 + cos(πe/E))/2``). ``batches_per_epoch`` caps an epoch (default: one pass over
    the training targets). ``context_size`` is the per-run context bank, ``context_per_batch``
    the budget of context events encoded per batch (at least ``min_context`` per run).
    ``val_events_per_run`` caps the validation targets per run (they are held in memory:
    set it for streamed data larger than memory). ``seed`` defaults to the run config's
    seed (the caller passes it to :func:`rarefy.denoise.train`).

    Run-directory pipeline (``rarefy train CONFIG --run RUN_DIR``, :func:`rarefy.train_denoiser`):
    ``fidelities`` names the fidelities whose runs train the denoiser (default: the lowest
    one); ``phi`` the per-event φ columns (default: the events' φ columns);
    ``test_blocks`` the (0-based) ``campaign.runs`` blocks whose runs are held out as
    ``split == "test"`` (never trained or validated on; ``split`` then divides the other
    runs); ``stream`` reads the event shards from disk every epoch instead of loading
    them into memory once. ``phi_log`` log-transforms φ columns before standardising:
    ``auto`` picks the strictly positive, right-skewed ones on the training runs
    (:meth:`rarefy.denoise.normalize.PhiMoments.log_mask`), a list names them, ``none``
    (default) logs none. ``ensemble: K`` trains K denoisers, member ``i`` with seed
    ``seed + i`` and so its own random train/validation split of the same non-test runs
    (bagging over runs), and ``rarefy denoise`` averages their probabilities.
    """

    model: DenoiseModelConfig = Field(default_factory=DenoiseModelConfig)
    """the network"""
    loss: DenoiseLossConfig = Field(default_factory=DenoiseLossConfig)
    """the training loss (a name is shorthand for one without parameters)"""
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    """signal–background mixup"""
    imbalance: list[ImbalancePhaseConfig] = Field(default_factory=list, max_length=MAX_LAYERS)
    """phases of positive oversampling, run one after the other (sets the epochs)"""
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    """early stopping on the validation loss"""
    epochs: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """training epochs without an ``imbalance`` schedule (default 20)"""
    batch_size: int = Field(default=3000, ge=1, le=MAX_SAMPLES)
    """target events per batch"""
    batches_per_epoch: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """most batches of one epoch (default: one pass over the training targets)"""
    lr: float = Field(default=1e-3, gt=0)
    """learning rate (with ``lr_schedule: cosine``: the starting rate)"""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``constant``, or ``cosine``: anneal from ``lr`` towards 0 over the epochs"""
    weight_decay: float = Field(default=0.0, ge=0)
    """weight decay of the optimiser"""
    split: list[float] = Field(default_factory=lambda: [0.8, 0.1, 0.1], min_length=3, max_length=3)
    """train / validation / test fractions of the runs"""
    context_size: int = Field(default=64, ge=1, le=MAX_SAMPLES)
    """context events per run (the per-run context bank)"""
    context_per_batch: int = Field(default=1024, ge=1, le=MAX_SAMPLES)
    """context events encoded per batch"""
    min_context: int = Field(default=4, ge=1, le=MAX_SAMPLES)
    """fewest context events per run in a batch"""
    val_events_per_run: int | None = Field(default=None, ge=1)
    """most validation target events per run, held in memory (default: all)"""
    score_folds: int = Field(default=2, ge=2, le=MAX_PARALLEL)
    """folds of scoring: each fold is scored with context drawn from the other folds only"""
    checkpoint: bool = True
    """save a checkpoint after every epoch, from which an interrupted training resumes"""
    tensorboard: bool = True
    """write TensorBoard logs"""
    progress: bool = True
    """show a progress bar"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``"""
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    """random seed (default: the run config's ``seed``)"""
    fidelities: list[str] | None = Field(default=None, min_length=1)
    """fidelities whose runs train the denoiser (default: the lowest one)"""
    phi: list[str] | None = Field(default=None, min_length=1)
    """per-event φ columns used (default: the events' φ columns)"""
    test_blocks: list[int] = Field(default_factory=list)
    """0-based ``campaign.runs`` blocks whose runs are held out as the test split"""
    stream: bool = False
    """read the event shards from disk every epoch instead of loading them into memory once"""
    phi_log: Literal["auto", "none"] | list[str] = "none"
    """φ columns to log-transform before standardising: ``auto`` (strictly positive, right-skewed ones), a list
    of names, or ``none``"""
    ensemble: int = Field(default=1, ge=1, le=MAX_PARALLEL)
    """number K of denoisers trained (member i with seed ``seed + i``); their probabilities are averaged"""

    @model_validator(mode="after")
    def _epochs(self) -> "DenoiseConfig":
        if self.imbalance and self.epochs is not None:
            raise ValueError("give either 'epochs' or an 'imbalance' schedule (whose phases set the epochs), not both")
        if any(f < 0 for f in self.split) or self.split[0] <= 0:
            raise ValueError(f"split must be three fractions >= 0 with a positive training share, got {self.split}")
        if self.min_context > self.context_size:
            raise ValueError(f"min_context ({self.min_context}) exceeds context_size ({self.context_size})")
        return self
