"""Vision of Keye-VL-2.0: the SigLIP-style ViT and ``mlp_AR`` projector, image/video preprocessing, placeholders.

Imports torch and the standard library only (Pillow and PyAV are imported where images and videos are decoded).
"""

from keye_agent.model.vision.config import VISION_PRESETS, VisionConfig
from keye_agent.model.vision.generate import embed_prompt, prefill, stream_generate_multimodal
from keye_agent.model.vision.load import build_tower, tower_config
from keye_agent.model.vision.preprocess import VisionInput, image_input, load_image, smart_resize
from keye_agent.model.vision.prompt import FRAME_TOKEN, MultimodalPrompt, VisionTokens, build_prompt, frame_text
from keye_agent.model.vision.video import VideoOptions, plan_frames, read_video, video_input
from keye_agent.model.vision.vit import KeyeVisionModel, Projector, VisionTower, frame_grids

__all__ = [
    "FRAME_TOKEN", "VISION_PRESETS", "KeyeVisionModel", "MultimodalPrompt", "Projector", "VideoOptions",
    "VisionConfig", "VisionInput", "VisionTokens", "VisionTower", "build_prompt", "build_tower", "embed_prompt", "frame_grids",
    "frame_text", "image_input", "load_image", "plan_frames", "prefill", "read_video", "smart_resize",
    "stream_generate_multimodal", "tower_config", "video_input",
]
