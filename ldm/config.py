"""Read CompVis `config.yaml` files and convert them into our typed, frozen configs.

This is the only place that knows the CompVis `target:` strings. Training-only parts (loss,
optimiser schedule, data, lightning) are ignored; an unknown target or a setting that would change
inference math and that we do not implement is an error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ldm.autoencoder import AutoencoderConfig
from ldm.text_encoder import TextEncoderConfig
from ldm.unet import UNetConfig

LATENT_DIFFUSION = "ldm.models.diffusion.ddpm.LatentDiffusion"
AUTOENCODER_KL = "ldm.models.autoencoder.AutoencoderKL"
VQ_MODEL = "ldm.models.autoencoder.VQModel"
VQ_MODEL_INTERFACE = "ldm.models.autoencoder.VQModelInterface"
UNET_MODEL = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
BERT_EMBEDDER = "ldm.modules.encoders.modules.BERTEmbedder"
IDENTITY = "torch.nn.Identity"
IS_FIRST_STAGE = "__is_first_stage__"
SUPPORTED_TARGETS = (LATENT_DIFFUSION, AUTOENCODER_KL, VQ_MODEL, VQ_MODEL_INTERFACE, UNET_MODEL,
                     BERT_EMBEDDER, IDENTITY, IS_FIRST_STAGE)

# Parameters that only matter for training or logging: accepted and ignored.
_TRAINING_ONLY = {
    "lossconfig", "scheduler_config", "ckpt_path", "ignore_keys", "load_only_unet", "monitor", "log_every_t",
    "loss_type", "clip_denoised", "original_elbo_weight", "l_simple_weight", "learn_logvar", "logvar_init",
    "cond_stage_trainable", "cond_stage_forward", "use_positional_encodings", "use_checkpoint", "image_key",
    "base_learning_rate", "lr_g_factor", "batch_resize_range", "sane_index_shape", "device", "use_tokenizer",
    "embedding_dropout", "cosine_s", "v_posterior", "num_timesteps_cond", "first_stage_key", "cond_stage_key",
    "use_fp16", "colorize_nlabels",
}


class ConfigError(ValueError):
    """A CompVis config that we cannot convert; the message names the file and the offending entry."""


@dataclass(frozen=True)
class DiffusionConfig:
    """A CompVis LatentDiffusion model: schedule, denoiser, first stage and conditioning."""

    unet: UNetConfig
    first_stage: AutoencoderConfig
    cond_stage: str                          # "first_stage" | "identity" | "bert"
    conditioning_key: str                    # "concat" | "crossattn"
    linear_start: float
    linear_end: float
    timesteps: int = 1000
    image_size: int = 64                     # latent size the model was trained at
    channels: int = 3                        # latent channels
    scale_factor: float = 1.0                # latent = scale_factor * first-stage latent
    use_ema: bool = True
    text_encoder: TextEncoderConfig | None = None
    cond_stage_key: str = ""

    @classmethod
    def inpainting_big(cls) -> DiffusionConfig:
        return cls(UNetConfig.inpainting_big(), AutoencoderConfig.vq_f4_noattn(), "first_stage", "concat",
                   0.0015, 0.0205, cond_stage_key="masked_image")

    @classmethod
    def bsr_sr(cls) -> DiffusionConfig:
        return cls(UNetConfig.bsr_sr(), AutoencoderConfig.vq_f4(), "identity", "concat", 0.0015, 0.0155,
                   cond_stage_key="LR_image")

    @classmethod
    def txt2img_1p4b(cls) -> DiffusionConfig:
        return cls(UNetConfig.txt2img_1p4b(), AutoencoderConfig.kl_f8(), "bert", "crossattn", 0.00085, 0.012,
                   image_size=32, channels=4, scale_factor=0.18215, use_ema=False,
                   text_encoder=TextEncoderConfig.txt2img_1p4b(), cond_stage_key="caption")

    @classmethod
    def tiny(cls, family: str) -> DiffusionConfig:
        # the demo's VQ first stages: 64 channels at every level (GroupNorm pairs) and 4096 codes
        vq = {"ch_mult": (2, 2, 2), "n_embed": 4096}
        if family == "inpainting":
            return replace(cls.inpainting_big(), unet=UNetConfig.tiny("inpainting"),
                           first_stage=replace(AutoencoderConfig.tiny("vq", "none"), **vq), image_size=16)
        if family == "superres":
            return replace(cls.bsr_sr(), unet=UNetConfig.tiny("superres"),
                           first_stage=replace(AutoencoderConfig.tiny("vq"), **vq), image_size=16)
        if family == "txt2img":
            return replace(cls.txt2img_1p4b(), unet=UNetConfig.tiny("txt2img"), first_stage=AutoencoderConfig.tiny("kl"),
                           # heads/dim_head keep upstream's fixed 8 x 64 (a CompVis YAML cannot change them)
                           text_encoder=TextEncoderConfig(n_embed=32, n_layer=2, vocab_size=128), image_size=8)
        raise ValueError(f"unknown tiny family {family!r}; choose from ['inpainting', 'superres', 'txt2img']")


ModelConfig = DiffusionConfig | AutoencoderConfig


# ----------------------------------------------------------------------------
# YAML -> typed config.
def load_config(path: str | Path) -> ModelConfig:
    """Read a CompVis config.yaml (its `model:` section) into a DiffusionConfig or AutoencoderConfig."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # omegaconf/yaml raise many types; all mean "not a readable YAML"
        raise ConfigError(f"{path}: not a readable YAML file ({type(err).__name__}: {err})") from err
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
        raise ConfigError(f"{path}: expected a CompVis config with a top-level `model:` section (target + params)")
    return config_from_dict(raw["model"], source=str(path))


def config_from_dict(node: Mapping[str, Any], *, source: str = "<config>") -> ModelConfig:
    """Convert the `model:` node of a CompVis config (a dict with `target` and `params`)."""
    target = _target(node, source, "model")
    params = dict(node.get("params") or {})
    if target == LATENT_DIFFUSION:
        return _latent_diffusion(params, source)
    if target in (AUTOENCODER_KL, VQ_MODEL, VQ_MODEL_INTERFACE):
        return _autoencoder(target, params, source, "model")
    raise ConfigError(f"{source}: model.target {target!r} is not a model we can load on its own; "
                      f"expected {LATENT_DIFFUSION} or a first-stage autoencoder")


def _target(node: Any, source: str, where: str) -> str:
    if isinstance(node, str) and node == IS_FIRST_STAGE:
        return IS_FIRST_STAGE
    if not isinstance(node, Mapping) or "target" not in node:
        raise ConfigError(f"{source}: {where} must be a mapping with a `target:` entry")
    target = node["target"]
    if target not in SUPPORTED_TARGETS:
        raise ConfigError(f"{source}: unsupported target {target!r} at {where}; supported targets: "
                          + ", ".join(SUPPORTED_TARGETS))
    return target


def _check_params(params: Mapping[str, Any], known: set[str], source: str, where: str) -> None:
    unknown = sorted(set(params) - known - _TRAINING_ONLY)
    if unknown:
        raise ConfigError(f"{source}: unsupported parameter(s) {unknown} in {where}.params")


def _require(value: Any, expected: Any, name: str, source: str, where: str) -> None:
    if value != expected:
        raise ConfigError(f"{source}: {where}.params.{name} = {value!r} is not supported (only {expected!r})")


def _latent_diffusion(p: dict[str, Any], source: str) -> DiffusionConfig:
    where = "model"
    _check_params(p, {"unet_config", "first_stage_config", "cond_stage_config", "linear_start", "linear_end",
                      "timesteps", "beta_schedule", "image_size", "channels", "conditioning_key", "concat_mode",
                      "scale_factor", "scale_by_std", "use_ema", "parameterization", "given_betas"}, source, where)
    _require(p.get("beta_schedule", "linear"), "linear", "beta_schedule", source, where)
    _require(p.get("parameterization", "eps"), "eps", "parameterization", source, where)
    _require(p.get("given_betas"), None, "given_betas", source, where)
    _require(bool(p.get("scale_by_std", False)), False, "scale_by_std", source, where)
    for key in ("unet_config", "first_stage_config", "cond_stage_config"):
        if key not in p:
            raise ConfigError(f"{source}: model.params.{key} is missing")
    if _target(p["unet_config"], source, "model.params.unet_config") != UNET_MODEL:
        raise ConfigError(f"{source}: model.params.unet_config.target must be {UNET_MODEL}")
    first_target = _target(p["first_stage_config"], source, "model.params.first_stage_config")
    if first_target not in (AUTOENCODER_KL, VQ_MODEL, VQ_MODEL_INTERFACE):
        raise ConfigError(f"{source}: model.params.first_stage_config.target {first_target!r} is not an autoencoder")
    first = _autoencoder(first_target, dict(p["first_stage_config"].get("params") or {}), source,
                         "model.params.first_stage_config")

    cond_target = _target(p["cond_stage_config"], source, "model.params.cond_stage_config")
    text = None
    if cond_target == IS_FIRST_STAGE:
        cond_stage = "first_stage"
    elif cond_target == IDENTITY:
        cond_stage = "identity"
    elif cond_target == BERT_EMBEDDER:
        cond_stage = "bert"
        text = _bert(dict(p["cond_stage_config"].get("params") or {}), source)
    else:
        raise ConfigError(f"{source}: cond_stage_config.target {cond_target!r} is not a conditioning stage; use "
                          f"{IS_FIRST_STAGE}, {IDENTITY} or {BERT_EMBEDDER}")
    key = p.get("conditioning_key") or ("concat" if p.get("concat_mode", True) else "crossattn")
    if key not in ("concat", "crossattn"):
        raise ConfigError(f"{source}: model.params.conditioning_key {key!r} is not supported; "
                          "choose from ['concat', 'crossattn']")
    return DiffusionConfig(
        unet=_unet(dict(p["unet_config"].get("params") or {}), source),
        first_stage=first,
        cond_stage=cond_stage,
        conditioning_key=key,
        linear_start=float(p.get("linear_start", 1e-4)),
        linear_end=float(p.get("linear_end", 2e-2)),
        timesteps=int(p.get("timesteps", 1000)),
        image_size=int(p.get("image_size", 256)),
        channels=int(p.get("channels", 3)),
        scale_factor=float(p.get("scale_factor", 1.0)),
        use_ema=bool(p.get("use_ema", True)),
        text_encoder=text,
        cond_stage_key=str(p.get("cond_stage_key", "image")),
    )


def _unet(p: dict[str, Any], source: str) -> UNetConfig:
    where = "model.params.unet_config"
    fields = {"image_size", "in_channels", "out_channels", "model_channels", "attention_resolutions",
              "num_res_blocks", "channel_mult", "num_heads", "num_head_channels", "num_heads_upsample",
              "use_scale_shift_norm", "resblock_updown", "use_new_attention_order", "use_spatial_transformer",
              "transformer_depth", "context_dim", "legacy", "conv_resample", "dropout"}
    _check_params(p, fields | {"dims", "num_classes", "n_embed"}, source, where)
    _require(p.get("dims", 2), 2, "dims", source, where)
    _require(p.get("num_classes"), None, "num_classes", source, where)
    _require(p.get("n_embed"), None, "n_embed", source, where)
    kwargs = {k: v for k, v in p.items() if k in fields}
    for key in ("attention_resolutions", "channel_mult"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    try:
        return UNetConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {where}: {err}") from err


def _autoencoder(target: str, p: dict[str, Any], source: str, where: str) -> AutoencoderConfig:
    _check_params(p, {"embed_dim", "n_embed", "ddconfig", "remap", "use_ema"}, source, where)
    _require(p.get("remap"), None, "remap", source, where)
    _require(bool(p.get("use_ema", False)), False, "use_ema", source, where)
    dd = dict(p.get("ddconfig") or {})
    dd_fields = {"ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "in_channels", "out_ch",
                 "z_channels", "double_z", "attn_type", "dropout"}
    unknown = sorted(set(dd) - dd_fields - {"use_linear_attn", "give_pre_end", "tanh_out", "resamp_with_conv"})
    if unknown:
        raise ConfigError(f"{source}: unsupported parameter(s) {unknown} in {where}.params.ddconfig")
    for name, expected in (("use_linear_attn", False), ("give_pre_end", False), ("tanh_out", False),
                           ("resamp_with_conv", True)):
        _require(dd.get(name, expected), expected, name, source, f"{where}.params.ddconfig")
    kwargs = {k: v for k, v in dd.items() if k in dd_fields}
    for key in ("ch_mult", "attn_resolutions"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    kind = "kl" if target == AUTOENCODER_KL else "vq"
    if "embed_dim" not in p or "z_channels" not in dd:
        raise ConfigError(f"{source}: {where} needs params.embed_dim and params.ddconfig.z_channels")
    try:
        return AutoencoderConfig(kind=kind, embed_dim=int(p["embed_dim"]),
                                 n_embed=int(p["n_embed"]) if kind == "vq" and "n_embed" in p else None, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {where}: {err}") from err


def _bert(p: dict[str, Any], source: str) -> TextEncoderConfig:
    where = "model.params.cond_stage_config"
    _check_params(p, {"n_embed", "n_layer", "vocab_size", "max_seq_len"}, source, where)
    try:
        return TextEncoderConfig(n_embed=int(p["n_embed"]), n_layer=int(p["n_layer"]),
                                 vocab_size=int(p.get("vocab_size", 30522)), max_seq_len=int(p.get("max_seq_len", 77)))
    except KeyError as err:
        raise ConfigError(f"{source}: {where}.params.{err.args[0]} is missing") from err
