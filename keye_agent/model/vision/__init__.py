"""Vision of Keye-VL-2.0: the SigLIP-style ViT and ``mlp_AR`` projector, image/video preprocessing, placeholders.

Imports torch and the standard library only (Pillow and PyAV are imported where images and videos are decoded).
"""

from keye_agent.model.vision.config import VISION_PRESETS, VisionConfig
from keye_agent.model.vision.vit import KeyeVisionModel, Projector, VisionTower, frame_grids

__all__ = ["VISION_PRESETS", "KeyeVisionModel", "Projector", "VisionConfig", "VisionTower", "frame_grids"]
