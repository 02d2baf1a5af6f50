"""Distiller schedules: safe loading, validation against a class catalog, the epoch timeline
and matching of parameter names against a model."""

from .loader import NotAScheduleError, load_schedule
from .model import Component, Policy, Schedule
from .names import resolve_names
from .timeline import EpochPlan, PlanEntry, agp_target, plan

__all__ = [
    "Component",
    "EpochPlan",
    "NotAScheduleError",
    "PlanEntry",
    "Policy",
    "Schedule",
    "agp_target",
    "load_schedule",
    "plan",
    "resolve_names",
]
