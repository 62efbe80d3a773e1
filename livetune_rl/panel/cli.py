"""``livetune panel``: the command. This module imports argparse only (``livetune --help``
stays fast); aiohttp and the server are imported when the command runs.

Example::

    livetune panel                      # every live run of yours, on http://127.0.0.1:8765/
    livetune panel --run seed-0 seed-1  # these runs, side by side
"""

from __future__ import annotations

import argparse
from typing import Any

from ..flags import add_options, from_args
from ..tokens import add_token_file
from .config import PanelConfig


def add_parser(sub: Any) -> None:
    """Add ``panel`` to the ``livetune`` subcommands: a flag per :class:`PanelConfig` option,
    plus where the token comes from (never a flag that ``ps`` would show)."""
    p = sub.add_parser("panel", help="a browser control panel: every knob, trigger, curve and "
                                     "journal record of your runs",
                       description="Serve a local web page that lists your live runs and ended "
                                   "ones, with a control per variable, a button per trigger, "
                                   "live curves and the journal. It talks to the runs over "
                                   "their gRPC API, as the other commands do.")
    add_options(p, PanelConfig)
    add_token_file(p, "the bearer token of your runs, in FILE (yours, mode 0600 or 0400); "
                      "default: $LIVETUNE_TOKEN. The page then asks for it once")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..tokens import token_from
    from .server import run_panel

    token = token_from(None, args.token_file)
    config = from_args(PanelConfig, args, token=token).check()
    return run_panel(config)
