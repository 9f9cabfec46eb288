"""The plugin machinery. Plugin authors import `tickserve.plugin` (the stable API), not this.

`hookspecs.py` (every hook, typed), `manager.py` (`load_plugins`: the built-ins, then the
entry points, honouring allow/deny lists), `calendars.py` (the built-in session calendars, an
ordinary plugin a user plugin can override).
"""
