"""ldm: a compact implementation of CompVis latent-diffusion inference that loads the original files.

    model = ldm.load("configs/ldm/bsr_sr.yaml", "models/ldm/bsr_sr/model.ckpt")
"""

from ldm.autoencoder import Autoencoder, AutoencoderConfig
from ldm.checkpoint import CheckpointError, LoadReport
from ldm.config import ConfigError, DiffusionConfig, load_config
from ldm.diffusion import LatentDiffusion
from ldm.hashing import file_sha256
from ldm.loading import build_model, check_pairing, load
from ldm.speed import optimize
from ldm.text_encoder import TextEncoderConfig
from ldm.unet import UNetConfig

__all__ = [
    "Autoencoder", "AutoencoderConfig", "CheckpointError", "ConfigError", "DiffusionConfig", "LatentDiffusion",
    "LoadReport", "TextEncoderConfig", "UNetConfig", "build_model", "check_pairing", "file_sha256", "load", "load_config",
    "optimize",
]
