"""ldm-lab: evaluate CompVis latent diffusion checkpoints (inpainting, super-resolution, text-to-image)."""

__version__ = "0.1.0"
