"""Datasets for the three tasks: lazy readers, validation, fingerprints, `prepare` commands, demo data.

Readers (map-style, usable with `torch.utils.data.DataLoader`; pixels are read in `__getitem__` only):
    InpaintingDataset(root)            ROOT/{images,masks,masked_images?,texts?}/  -> InpaintingSample
    SuperResolutionDataset(root, scale) ROOT/X{s}/{HIGH,LOW}/ or an HR folder     -> SuperResolutionSample
    Text2ImgDataset(root)              ROOT/images/ + captions.txt | results.csv  -> Text2ImgSample
Helpers: load_image / load_mask (design §9 mode rule), dataset_fingerprint, detect_layout, check_dataset,
bicubic_downscale, generate_mask; prepare_demo / prepare_superres / prepare_text2img / prepare_inpainting.
"""

from ldm_lab.data.check import CheckReport, check_dataset
from ldm_lab.data.demo import prepare_demo
from ldm_lab.data.fingerprint import dataset_fingerprint
from ldm_lab.data.images import load_image, load_mask, to_rgb, to_tensor
from ldm_lab.data.inpainting import InpaintingDataset, InpaintingSample
from ldm_lab.data.layout import LAYOUTS, detect_layout
from ldm_lab.data.masks import generate_mask
from ldm_lab.data.prepare_files import prepare_superres, prepare_text2img
from ldm_lab.data.prepare_inpainting import prepare_inpainting
from ldm_lab.data.resize import bicubic_downscale, modcrop
from ldm_lab.data.superres import SuperResolutionDataset, SuperResolutionSample
from ldm_lab.data.text2img import CAPTION_POLICIES, Text2ImgDataset, Text2ImgSample

__all__ = [
    "CAPTION_POLICIES",
    "LAYOUTS",
    "CheckReport",
    "InpaintingDataset",
    "InpaintingSample",
    "SuperResolutionDataset",
    "SuperResolutionSample",
    "Text2ImgDataset",
    "Text2ImgSample",
    "bicubic_downscale",
    "check_dataset",
    "dataset_fingerprint",
    "detect_layout",
    "generate_mask",
    "load_image",
    "load_mask",
    "modcrop",
    "prepare_demo",
    "prepare_inpainting",
    "prepare_superres",
    "prepare_text2img",
    "to_rgb",
    "to_tensor",
]
