"""The host's plumbing, below everything else: errors, the hardware and runtime settings, files
written safely, strict value types. Nothing here knows about datasets, methods or results."""
