"""Scale-out on existing engines: activation extraction on Ray Data (:mod:`cxrlens.scale.ray_extract`) and
data-parallel training under ``torchrun`` (:mod:`cxrlens.scale.ddp`). ``ray`` is the optional ``[scale]`` extra and
is imported only when the Ray engine runs. See ``docs/scale.md``."""
