"""What every saliency / attention / evidence map in cxrlens must pass, whichever stage drew it.

* :mod:`cxrlens.saliency.sanity` — cascading model-parameter randomisation (Adebayo et al. 2018): the map must
  change when the model's learned parameters are destroyed;
* :mod:`cxrlens.saliency.pointing` — the pointing game against pixel masks, with the centre-prior, random and
  ViT Grad-CAM maps a reviewer expects beside it.

Both take maps as arrays and models as ``torch.nn.Module``; they import no stage package, so SAE heatmaps
(:mod:`cxrlens.interpret`), report evidence (:mod:`cxrlens.evaluate`) and the analysis tools all use the same checks.
"""

from cxrlens.saliency.pointing import centre_prior_map, pointing_hits, pointing_summary, random_maps, vit_gradcam
from cxrlens.saliency.sanity import (
    SanityConfig,
    SanityResult,
    cascading_randomization,
    map_similarity,
    sanity_plot,
    sanity_table,
)

__all__ = [
    "SanityConfig",
    "SanityResult",
    "cascading_randomization",
    "centre_prior_map",
    "map_similarity",
    "pointing_hits",
    "pointing_summary",
    "random_maps",
    "sanity_plot",
    "sanity_table",
    "vit_gradcam",
]
