"""Decisions (issue 11): thresholds per policy and the step that turns a score into allow | review | block."""

from worker.decisions.decider import Decider
from worker.decisions.thresholds import PolicyThresholds, ThresholdSet, ThresholdsInvalid

__all__ = ["Decider", "PolicyThresholds", "ThresholdSet", "ThresholdsInvalid"]
