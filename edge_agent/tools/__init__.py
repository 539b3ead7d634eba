"""The commissioning and test tools, apart from the runtime: ``capture``, ``replay``,
``probe``, ``simulate`` (``sim``), ``status`` and ``export`` (``ops``), ``demo``, each with
its own argument module (``<tool>/arguments.py``).

Tools import the runtime (edge_agent/ and drivers/), never the other way round: the
runtime reaches a tool only by module name, through edge_agent/toolbox.py, when a tool
command is run or a link records (tests/test_runtime_imports.py enforces it).
"""
