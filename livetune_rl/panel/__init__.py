"""``livetune panel``: a browser control panel for live runs, a client of their gRPC API.

The panel is a local HTTP server (aiohttp) for one person's browser. It finds your live runs
through discovery, follows each as any client does (``Watch``, ``ListVariables``,
``GetHistory``), and turns the page's requests into ``SetVariables`` and ``FireTrigger``
calls, journaled with ``livetune-panel`` as their source. Nothing new runs in the training
process. Ended runs are shown read-only from their journals.

Modules, one concept each: :mod:`~livetune_rl.panel.config` (the options, checked),
:mod:`~livetune_rl.panel.security` (host, origin and token checks),
:mod:`~livetune_rl.panel.requests` (HTTP bodies read and checked),
:mod:`~livetune_rl.panel.views` (JSON for the page; which control fits a variable),
:mod:`~livetune_rl.panel.undo` (which set request Undo reverts), :mod:`~livetune_rl.panel.hub` (the
runs followed), :mod:`~livetune_rl.panel.server` (the HTTP routes),
:mod:`~livetune_rl.panel.cli` (the command). The page is ``static/``: plain HTML, CSS and
JavaScript with uPlot vendored, no build step. This package imports aiohttp only in
:mod:`~livetune_rl.panel.server` (``pip install livetune_rl[panel]``).

Example::

    livetune panel                         # http://127.0.0.1:8765/
    livetune panel --run seed-0 seed-1     # two runs side by side
"""
