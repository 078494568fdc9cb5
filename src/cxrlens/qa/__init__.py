"""Visual question answering and report checking on one image (``cxrlens ask``, ``cxrlens check-report``)."""
