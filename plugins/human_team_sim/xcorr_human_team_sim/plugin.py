"""Hook implementations of the human_team_sim plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core


@xcorr_core.hookimpl
def register_statistics(register: Any) -> None:
    from .components import HumanAccuracy, StudyPower, TeamAccuracy, TeamComplementarity

    for cls in (HumanAccuracy, TeamAccuracy, TeamComplementarity, StudyPower):
        register(cls)


@xcorr_core.hookimpl
def register_commands(subparsers: Any) -> None:
    from .cli import add_command

    add_command(subparsers)


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import team_section

    register("Human-AI teams (CUB study)", team_section)
