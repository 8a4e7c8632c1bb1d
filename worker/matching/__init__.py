"""Matching before the GPU (issue 12): an image already judged, or known to an operator's hash bank, is
answered without asking the model. `base` is the seam (`Matcher`, `MatchOutcome`); `cache` the verdict cache,
`pdq` the perceptual hash."""
