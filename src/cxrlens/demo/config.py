"""What the demo runs on: its config and the names of its runs — light (no torch), so the CLI can build its options
from them without importing the pipeline."""

from __future__ import annotations

import dataclasses

__all__ = ["DEMO_LAYER", "DEMO_SAE", "DEMO_STAGES", "DEMO_STREAM", "DemoConfig"]

DEMO_SAE = "iu-phantom-demo-patch"
DEMO_LAYER = "block.2"
DEMO_STREAM = f"{DEMO_LAYER}/patch"


DEMO_STAGES: tuple[str, ...] = (
    "import", "phantom", "activations", "sae", "interpret", "reports", "evaluation", "pointing", "controls", "summary"
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on.

    Attributes:
        max_images: render only the first N IU images and train token-sized SAEs (100 steps of 256 tokens) — a quick
            look that exercises the whole chain; None = all 7,470 images and the real SAE (3,000 steps of 1,024).
    """

    max_images: int | None = None

    @property
    def quick(self) -> bool:
        return self.max_images is not None
