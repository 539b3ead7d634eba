"""The commissioning and test tools, apart from the runtime: ``capture``, ``replay``,
``probe``, ``simulate`` (``sim``), ``status`` and ``export`` (``ops``), ``demo``.

Tools import the runtime (edge_agent/ and drivers/), never the other way round.
"""
