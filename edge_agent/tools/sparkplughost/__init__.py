"""``edge-agent sparkplug-host``: a small Sparkplug B primary host application to try an
edge node against (docs/sparkplug.md). It publishes its STATE, decodes and prints what
edge nodes publish, flags breaks of Sparkplug's rules, and can ask a node for a rebirth.
"""
